//! What a handler may return: any `Serialize` value, an [`Output`] that also asks for a worker
//! refresh, or a [`Streaming`] stream of parts.

use crate::error::{BoxError, JobError};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::panic::AssertUnwindSafe;

/// A handler's response, converted into what the runtime posts.
///
/// Implemented for every `Serialize` type (a buffered result), for [`Output`] and for
/// [`Streaming`]. Objects follow the SDK's conventions: a truthy `"error"` key marks the job
/// failed and a truthy `"refresh_worker"` key asks RunPod to recycle the worker.
pub trait IntoJobOutput: Send + 'static {
    /// Performs the conversion.
    fn into_job_output(self) -> JobOutput;
}

/// The runtime's view of a handler response; built through [`IntoJobOutput`].
pub struct JobOutput(pub(crate) Kind);

pub(crate) enum Kind {
    Value { value: Value, refresh_worker: bool },
    Failed(JobError),
    Stream(BoxStream<'static, Result<Value, JobError>>),
}

fn serialize<T: Serialize>(value: &T) -> Result<Value, JobError> {
    serde_json::to_value(value).map_err(|err| {
        JobError::new(
            "SerializeError",
            format!("cannot serialize the output: {err}"),
        )
    })
}

impl<T: Serialize + Send + 'static> IntoJobOutput for T {
    fn into_job_output(self) -> JobOutput {
        Output::new(self).into_job_output()
    }
}

/// A buffered result with an explicit worker refresh, instead of the SDK's magic
/// `"refresh_worker": true` key.
///
/// ```
/// use runpod_handler::Output;
///
/// let out = Output::new(serde_json::json!({"pages": 3})).refresh_worker();
/// # let _ = out;
/// ```
#[derive(Debug, Clone)]
pub struct Output<T> {
    value: T,
    refresh_worker: bool,
}

impl<T> Output<T> {
    /// Wraps a result value.
    pub fn new(value: T) -> Self {
        Self {
            value,
            refresh_worker: false,
        }
    }

    /// Asks RunPod to recycle this worker after the result is delivered (`"stopPod": true`).
    pub fn refresh_worker(mut self) -> Self {
        self.refresh_worker = true;
        self
    }
}

impl<T: Serialize + Send + 'static> IntoJobOutput for Output<T> {
    fn into_job_output(self) -> JobOutput {
        match serialize(&self.value) {
            Ok(value) => JobOutput(Kind::Value {
                value,
                refresh_worker: self.refresh_worker,
            }),
            Err(err) => JobOutput(Kind::Failed(err)),
        }
    }
}

/// A streamed result: every part is posted to RunPod's job-stream endpoint as it is produced.
///
/// ```
/// use runpod_handler::Streaming;
/// use futures_util::stream;
///
/// let parts = Streaming::new(stream::iter((0..3).map(|i| Ok::<_, std::io::Error>(format!("chunk-{i}")))));
/// # let _ = parts;
/// ```
pub struct Streaming<S>(S);

impl<S> Streaming<S> {
    /// Wraps a stream of `Result` parts; an `Err` part ends the stream as a failed job.
    pub fn new(stream: S) -> Self {
        Self(stream)
    }
}

impl<S, V, E> IntoJobOutput for Streaming<S>
where
    S: Stream<Item = Result<V, E>> + Send + 'static,
    V: Serialize,
    E: Into<BoxError>,
{
    fn into_job_output(self) -> JobOutput {
        // A panic while producing a part ends the stream as a failed job, like an `Err` part.
        JobOutput(Kind::Stream(
            AssertUnwindSafe(self.0)
                .catch_unwind()
                .map(|part| match part {
                    Ok(Ok(v)) => serialize(&v),
                    Ok(Err(err)) => Err(JobError::from_handler_error(err)),
                    Err(panic) => Err(JobError::from_panic(panic)),
                })
                .boxed(),
        ))
    }
}
