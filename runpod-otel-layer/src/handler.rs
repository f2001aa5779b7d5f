//! The layer's view of the runtime's job types.

use runpod_handler::{Completion, Invocation, Outcome};

use crate::job::{JobRequest, JobResponse, JobStatus};

impl JobRequest for Invocation {
    fn job_id(&self) -> &str {
        Invocation::job_id(self)
    }

    fn worker_id(&self) -> Option<&str> {
        Some(self.context().worker_id()).filter(|w| !w.is_empty())
    }

    fn endpoint_id(&self) -> Option<&str> {
        self.context().endpoint_id()
    }
}

impl JobResponse for Completion {
    fn status(&self) -> JobStatus<'_> {
        match &self.outcome {
            Outcome::Success => JobStatus::Success,
            Outcome::Failed { error_type } => JobStatus::Failed { error_type },
            // `Outcome` is non-exhaustive: anything new counts as not successful.
            Outcome::Cancelled | _ => JobStatus::Cancelled,
        }
    }

    fn post_failure(&self) -> Option<&str> {
        self.post_failure.map(|failure| failure.as_str())
    }
}
