//! Progress updates: one ordered queue per job, drained before its result is posted, so an
//! update can never land after the result (which leaves SDK jobs stuck `IN_PROGRESS`).

use crate::deliver::Sink;
use serde_json::Value;
use std::fmt;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why a progress update was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProgressError {
    /// The job's result is already being posted.
    #[error("the job has finished; progress updates are no longer accepted")]
    JobFinished,
    /// The update does not serialise to JSON.
    #[error("cannot serialize the progress update: {0}")]
    Serialize(#[source] serde_json::Error),
}

pub(crate) struct Progress {
    sink: Sink,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

enum State {
    Idle,
    Open {
        queue: mpsc::UnboundedSender<Value>,
        drain: JoinHandle<()>,
    },
    Closed,
}

impl Progress {
    pub(crate) fn new(sink: Sink) -> Self {
        Self {
            sink,
            runtime: tokio::runtime::Handle::current(),
            state: Mutex::new(State::Idle),
        }
    }

    pub(crate) fn send(&self, job_id: &str, update: Value) -> Result<(), ProgressError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*state {
            State::Closed => Err(ProgressError::JobFinished),
            State::Open { queue, .. } => queue.send(update).map_err(|_| ProgressError::JobFinished),
            State::Idle => {
                let (queue, mut updates) = mpsc::unbounded_channel::<Value>();
                // The first update is queued before the drain task can observe the channel.
                let _ = queue.send(update);
                let sink = self.sink.clone();
                let job_id = job_id.to_owned();
                let drain = self.runtime.spawn(async move {
                    while let Some(update) = updates.recv().await {
                        sink.progress(&job_id, update).await;
                    }
                });
                *state = State::Open { queue, drain };
                Ok(())
            }
        }
    }

    /// Refuses further updates and waits until every queued one is delivered.
    pub(crate) async fn close(&self) {
        let state = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::replace(&mut *state, State::Closed)
        };
        if let State::Open { queue, drain } = state {
            drop(queue);
            let _ = drain.await;
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}
