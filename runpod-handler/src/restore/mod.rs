//! FlashBoot restores, handled as AWS Lambda handles SnapStart restores (`lambda_runtime` 1.3's
//! `SnapStartResource`): README "FlashBoot and restores".
//!
//! FlashBoot brings back a snapshot of the whole worker process, possibly much later and on
//! another host, and runs none of its start-up code again. Whatever the process opened before
//! the snapshot may be dead: keep-alive connections (to RunPod, to a telemetry collector, to a
//! supervised child server), credentials, a child's state. RunPod sends no signal, so the
//! process's [`Detector`] infers a restore from its clocks; then, **before the worker takes its
//! next job** (a load-balancing worker: while `/ping` answers 204), the runtime
//!
//! 1. drops its HTTP connection pools (job traffic and heartbeat), so that no request is sent
//!    on a connection that died with the snapshot;
//! 2. runs each registered [`RestoreResource`]'s [`after_restore`](RestoreResource::after_restore),
//!    in registration order (foundations first), under the start-up limit;
//! 3. reports a hook that fails, panics or outlives that limit as a failed start is reported
//!    (docs/protocol.md §1.3): the next job is answered with a `prestart_failed` error naming
//!    the hook, with the log lines of the restore, and the worker exits with an error
//!    (a load-balancing worker answers 503 and exits).
//!
//! ```no_run
//! use futures_util::future::BoxFuture;
//! use runpod_handler::restore::RestoreResource;
//! use runpod_handler::{service_fn, BoxError, Job, JobError, Runtime};
//! use std::sync::Arc;
//!
//! /// A database pool whose connections do not survive a snapshot.
//! struct Database;
//!
//! impl RestoreResource for Database {
//!     fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
//!         Box::pin(async move { /* reconnect */ Ok(()) })
//!     }
//! }
//!
//! # async fn example() -> Result<(), runpod_handler::Error> {
//! let database = Arc::new(Database);
//! Runtime::from_env()?
//!     .restore_resource(database.clone())
//!     .run(service_fn(|job: Job<serde_json::Value>| async move { Ok::<_, JobError>(job.input) }))
//!     .await
//! # }
//! ```

mod detect;
pub(crate) mod lifecycle;

pub use detect::{Detector, Thresholds};

use crate::error::BoxError;
use futures_util::future::BoxFuture;

/// Something that must be rebuilt or re-checked after a FlashBoot restore: a connection pool,
/// credentials, a supervised child process. The shape of `lambda_runtime`'s
/// `SnapStartResource`, so that a resource written for one ports to the other.
///
/// Both hooks default to doing nothing; each returns a boxed future so that the trait stays
/// object-safe. [`name`](Self::name) is what a failure report calls the resource.
pub trait RestoreResource: Send + Sync {
    /// Before a snapshot is taken, in reverse registration order, where a snapshot point is
    /// known. FlashBoot gives none (it snapshots an idle worker without warning), so the
    /// runtime does not call it on RunPod; it is here so that a `SnapStartResource` ports as
    /// it is.
    fn before_snapshot(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

    /// After a restore, before the next job, in registration order. An error, a panic or
    /// outliving the start-up limit fails the worker as a failed start does.
    fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

    /// The resource's name in logs and failure reports (default: its type's name).
    fn name(&self) -> &str {
        let full = std::any::type_name::<Self>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path)
    }
}
