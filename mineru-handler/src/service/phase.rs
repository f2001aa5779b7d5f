//! The one phase helper. Each phase of a job (`fetch_input`, `parse`, `package`) runs in its
//! own span under the runtime's job span (docs/telemetry.md §5.2); its time goes to the
//! response's `debug.phase_ms` and to the phase histogram, and a failure inside it is recorded
//! on its span (ERROR status and one `exception` event) before it becomes the job's failure.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument as _;

use super::failure::JobFailure;
use crate::config::ServiceConfig;
use crate::engine::EngineError;
use crate::metrics::{JobPhase, MineruMetrics};
use crate::response::{DebugInfo, PhaseTimings};

/// What a job has produced so far, for the failure response and its metrics.
pub(super) struct JobState {
    pub started: Instant,
    pub debug: DebugInfo,
    /// Where the job is (the failure's `phase` label).
    pub phase: JobPhase,
    pub backend: Option<&'static str>,
    pub input_format: Option<&'static str>,
}

impl JobState {
    pub(super) fn new(debug: DebugInfo) -> Self {
        JobState {
            started: Instant::now(),
            debug,
            phase: JobPhase::Validate,
            backend: None,
            input_format: None,
        }
    }

    /// Enters `phase`, whose work runs in `span`.
    pub(super) fn begin<'a>(
        &mut self,
        phase: JobPhase,
        span: tracing::Span,
        config: &'a ServiceConfig,
    ) -> PhaseRun<'a> {
        self.phase = phase;
        PhaseRun {
            phase,
            span,
            started: Instant::now(),
            config,
        }
    }
}

/// A phase in progress: its span, its start, and the settings its failures are scrubbed with.
pub(super) struct PhaseRun<'a> {
    phase: JobPhase,
    span: tracing::Span,
    started: Instant,
    config: &'a ServiceConfig,
}

impl PhaseRun<'_> {
    /// Records a field of the phase span.
    pub(super) fn record(&self, field: &str, value: impl tracing::Value) {
        self.span.record(field, value);
    }

    /// Awaits `step` inside the span.
    pub(super) async fn run<T, E>(
        &self,
        step: impl Future<Output = Result<T, E>>,
    ) -> Result<T, JobFailure>
    where
        JobFailure: From<E>,
    {
        let outcome = step.instrument(self.span.clone()).await;
        outcome.map_err(|e| self.fail(e.into()))
    }

    /// Runs `step` on its own task inside the span, so it goes on when the job's future is
    /// dropped, and hands back the step's own error for the caller to judge (a chunk's
    /// failure may be retried); only a panic is the job's failure here.
    pub(super) async fn spawn_step<T, E>(
        &self,
        step: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<Result<T, E>, JobFailure>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let joined = tokio::spawn(step.instrument(self.span.clone())).await;
        joined.map_err(|join| self.fail(join.into()))
    }

    /// Records an engine call's failure on the span (ERROR status and one `exception`
    /// event), whatever the job then makes of it.
    pub(super) fn record_engine_error(&self, error: &EngineError) {
        JobFailure::new(error.error_type(), error).record_on(&self.span, self.config);
    }

    /// Runs blocking file work on the blocking pool, inside the span.
    pub(super) async fn blocking<T, E>(
        &self,
        work: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, JobFailure>
    where
        T: Send + 'static,
        E: Send + 'static,
        JobFailure: From<E>,
    {
        let span = self.span.clone();
        let joined = tokio::task::spawn_blocking(move || span.in_scope(work)).await;
        self.settle(joined)
    }

    fn settle<T, E>(
        &self,
        joined: Result<Result<T, E>, tokio::task::JoinError>,
    ) -> Result<T, JobFailure>
    where
        JobFailure: From<E>,
    {
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.fail(e.into())),
            Err(join) => Err(self.fail(join.into())),
        }
    }

    /// Records `failure` on the phase span and passes it on.
    pub(super) fn fail(&self, failure: JobFailure) -> JobFailure {
        failure.record_on(&self.span, self.config);
        failure
    }

    /// The phase's time so far, as the response's `debug.phase_ms` reports it.
    pub(super) fn stamp(&self, state: &mut JobState) {
        let ms = Some(PhaseTimings::ms(self.started.elapsed()));
        let timings = &mut state.debug.phase_ms;
        match self.phase {
            JobPhase::FetchInput => timings.fetch_input = ms,
            JobPhase::Parse => timings.mineru_parse = ms,
            JobPhase::Package => timings.package = ms,
            JobPhase::Validate | JobPhase::Handler => {}
        }
    }

    /// Ends the phase: its duration goes to the phase histogram, and its span closes.
    pub(super) fn finish(self, metrics: &MineruMetrics) {
        metrics.phase_done(self.phase, self.started.elapsed());
    }
}
