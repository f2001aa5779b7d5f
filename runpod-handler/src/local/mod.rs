//! Local modes (docs/protocol.md §15): one job from `--test_input`/`test_input.json`, or the
//! development API server. Jobs run through the same stack as in worker mode, their
//! deliveries captured instead of posted; what the modes show is read from the capture.

#[cfg(feature = "local-api")]
mod api;
mod job;
pub(crate) mod test_input;

#[cfg(not(feature = "local-api"))]
use crate::config::Config;

#[cfg(feature = "local-api")]
pub(crate) use api::serve;
/// Load-balancing workers run a job handler's jobs as the local modes do.
#[cfg(feature = "lb")]
pub(crate) use job::{LocalJob, LocalResult};

/// Without the `local-api` feature, `--rp_serve_api` explains what is missing.
#[cfg(not(feature = "local-api"))]
pub(crate) async fn serve(
    _: &Config,
    _: &str,
    _: u16,
    _: usize,
    _: crate::service::JobService,
) -> Result<(), crate::Error> {
    Err(crate::Error::Serve(std::io::Error::other(
        "--rp_serve_api needs runpod-handler's `local-api` feature",
    )))
}
