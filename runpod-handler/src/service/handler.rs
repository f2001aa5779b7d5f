//! The innermost service: deserialise the input into the handler's type, call the handler,
//! and turn errors and panics into [`JobError`]s so that nothing a handler does can take the
//! worker down.

use super::Invocation;
use crate::error::{BoxError, JobError};
use crate::job::Job;
use crate::output::{IntoJobOutput, JobOutput};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use tower::{Service, ServiceExt};

/// What the handler produced.
pub(crate) enum Handled {
    Output(JobOutput),
    Failed(JobError),
}

pub(crate) struct HandlerService<S, T> {
    inner: S,
    input: PhantomData<fn() -> T>,
}

impl<S: Clone, T> Clone for HandlerService<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            input: PhantomData,
        }
    }
}

impl<S, T> HandlerService<S, T> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            input: PhantomData,
        }
    }
}

impl<S, T> Service<Invocation> for HandlerService<S, T>
where
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Response: IntoJobOutput,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: DeserializeOwned + Send + 'static,
{
    type Response = Handled;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Handled, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness of the user's service is awaited inside the job, so that a handler error
        // there becomes that job's error result instead of stalling the runtime.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, invocation: Invocation) -> Self::Future {
        let service = self.inner.clone();
        Box::pin(async move {
            tracing::info!("Started.");
            let context = invocation.context;
            let input = match serde_path_to_error::deserialize::<_, T>(context.raw_input()) {
                Ok(input) => input,
                Err(err) => {
                    let message =
                        format!("the job input does not match the handler's input type: {err}");
                    return Ok(Handled::Failed(JobError::new("DeserializeError", message)));
                }
            };
            let job = Job::new(input, context);
            let handled = AssertUnwindSafe(async move {
                match service.oneshot(job).await {
                    Ok(response) => Handled::Output(response.into_job_output()),
                    Err(err) => Handled::Failed(JobError::from_handler_error(err)),
                }
            })
            .catch_unwind()
            .await;
            Ok(handled.unwrap_or_else(|panic| Handled::Failed(JobError::from_panic(panic))))
        })
    }
}
