//! [`Health`]: what `/ping` answers. RunPod's load balancer reads 200 as healthy, 204 as
//! initializing and anything else as unhealthy; it measures a worker's cold start from the
//! first 204 to the first 200, and routes requests only to workers that answer 200.

use axum::body::Body;
use axum::http::{Response, StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const STARTING: u8 = 0;
const READY: u8 = 1;
const UNHEALTHY: u8 = 2;
const DRAINING: u8 = 3;

/// The worker's health as `/ping` reports it; clones share one state.
///
/// The server sets it: starting (204) while the fitness checks and the start hook run, ready
/// (200) once they succeed, unhealthy (503) when one fails, draining (503) after SIGTERM.
/// The application can report a failure it detects later (a crashed engine) with
/// [`mark_unhealthy`](Self::mark_unhealthy), and a recovery with
/// [`mark_ready`](Self::mark_ready); neither undoes draining.
///
/// ```
/// let health = runpod_handler::lb::Health::default();
/// assert_eq!(health.status(), 204);
/// health.mark_ready();
/// assert_eq!(health.status(), 200);
/// health.mark_unhealthy();
/// assert_eq!(health.status(), 503);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Health {
    state: Arc<AtomicU8>,
}

impl Health {
    /// The status `/ping` answers now.
    pub fn status(&self) -> u16 {
        self.code().as_u16()
    }

    /// Reports the worker healthy (200), unless it is draining.
    pub fn mark_ready(&self) {
        self.set_unless_draining(READY);
    }

    /// Reports the worker unhealthy (503), so that RunPod stops routing to it.
    pub fn mark_unhealthy(&self) {
        self.set_unless_draining(UNHEALTHY);
    }

    /// Back to starting (204) while a restore is handled, unless draining.
    pub(crate) fn restoring(&self) {
        self.set_unless_draining(STARTING);
    }

    pub(crate) fn drain(&self) {
        self.state.store(DRAINING, Ordering::Release);
    }

    /// Whether requests are served: only once ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// What a request that is not served is told, for the 503 body.
    pub(crate) fn not_ready_reason(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            STARTING => "the worker is starting",
            DRAINING => "the worker is shutting down",
            _ => "the worker is unhealthy",
        }
    }

    fn set_unless_draining(&self, state: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != DRAINING).then_some(state)
            });
    }

    fn code(&self) -> StatusCode {
        match self.state.load(Ordering::Acquire) {
            STARTING => StatusCode::NO_CONTENT,
            READY => StatusCode::OK,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `/ping` response: the status alone (a 204 has no body by definition).
    pub(crate) fn ping(&self) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.code();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_is_final() {
        let health = Health::default();
        health.mark_ready();
        assert!(health.is_ready());
        health.drain();
        health.mark_ready();
        assert_eq!(health.status(), 503);
        assert!(!health.is_ready());
        assert_eq!(health.not_ready_reason(), "the worker is shutting down");
    }
}
