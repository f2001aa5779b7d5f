//! The local endpoint's jobs and workers as data: the queue, each job's state and timers, who
//! holds what (docs/endpoint.md §3). No I/O and no clock of its own: every change takes the
//! time it happens at, so the rules are tested at chosen instants and the server supplies
//! `Instant::now()`.

use crate::endpoint::{
    Health, JobCounts, JobReport, JobStatus, Policy, StreamChunk, StreamReport, WorkerCounts,
};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// RunPod's bounds on a job's `policy` (docs/endpoint.md §2.1).
const MIN_EXECUTION_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_TTL: Duration = Duration::from_secs(10);
const MAX_POLICY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The endpoint's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A job's execution timeout when its policy sets none.
    pub(crate) execution_timeout: Duration,
    /// A job's time-to-live when its policy sets none.
    pub(crate) ttl: Duration,
    /// How long the result of a `/run` job is kept after it ended.
    pub(crate) keep_async: Duration,
    /// How long the result of a `/runsync` job is kept after it ended.
    pub(crate) keep_sync: Duration,
    /// Silence after which a worker holding jobs is given up.
    pub(crate) ping_timeout: Duration,
    /// Takes of one job after which a job whose workers keep dying fails.
    pub(crate) max_attempts: u32,
}

/// A job that reached its end with a webhook to call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ended {
    pub(crate) webhook: String,
    pub(crate) report: JobReport,
}

/// What a sweep did and when the next one is due.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    pub(crate) ended: Vec<Ended>,
    /// Workers that held jobs and went silent: their jobs are queued again; stop them.
    pub(crate) silent: Vec<String>,
    pub(crate) next: Option<Instant>,
}

/// Why a request was refused (the 400's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub(crate) String);

struct Record {
    /// The request body as submitted (`input`, `webhook`, `policy`, ...): served to the worker.
    request: Map<String, Value>,
    sync: bool,
    execution_timeout: Duration,
    ttl: Duration,
    status: JobStatus,
    submitted: Instant,
    taken: Option<Instant>,
    ended: Option<Instant>,
    worker: Option<String>,
    output: Option<Value>,
    error: Option<Value>,
    progress: Option<Value>,
    parts: Vec<Value>,
    /// Parts already returned by `/stream`.
    streamed: usize,
    attempts: u32,
}

#[derive(Default)]
struct Worker {
    /// `None` until its first request: still starting.
    last_seen: Option<Instant>,
    held: BTreeSet<String>,
    to_stop: Vec<String>,
    unhealthy: bool,
    /// Asked to be recycled (`stopPod`): it gets no more jobs.
    retiring: bool,
}

/// Every job and worker of one endpoint.
pub(crate) struct Jobs {
    limits: Limits,
    records: HashMap<String, Record>,
    queue: VecDeque<String>,
    workers: BTreeMap<String, Worker>,
    completed: u64,
    failed: u64,
    retried: u64,
}

impl Jobs {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            records: HashMap::new(),
            queue: VecDeque::new(),
            workers: BTreeMap::new(),
            completed: 0,
            failed: 0,
            retried: 0,
        }
    }

    /// Queues a `/run` (`sync` false) or `/runsync` request; the answer to `/run`.
    pub(crate) fn submit(
        &mut self,
        request: Map<String, Value>,
        sync: bool,
        now: Instant,
    ) -> Result<JobReport, Refused> {
        if !request.contains_key("input") {
            return Err(Refused("the request has no \"input\"".into()));
        }
        let policy = match request.get("policy") {
            None | Some(Value::Null) => Policy::default(),
            Some(policy) => serde_json::from_value(policy.clone())
                .map_err(|err| Refused(format!("invalid \"policy\": {err}")))?,
        };
        let execution_timeout = bounded(
            "executionTimeout",
            policy.execution_timeout,
            MIN_EXECUTION_TIMEOUT,
            self.limits.execution_timeout,
        )?;
        let ttl = bounded("ttl", policy.ttl, MIN_TTL, self.limits.ttl)?;
        let uuid = uuid::Uuid::new_v4();
        let id = if sync {
            format!("sync-{uuid}")
        } else {
            uuid.to_string()
        };
        let record = Record {
            request,
            sync,
            execution_timeout,
            ttl,
            status: JobStatus::InQueue,
            submitted: now,
            taken: None,
            ended: None,
            worker: None,
            output: None,
            error: None,
            progress: None,
            parts: Vec::new(),
            streamed: 0,
            attempts: 0,
        };
        self.records.insert(id.clone(), record);
        self.queue.push_back(id.clone());
        Ok(JobReport::bare(id, JobStatus::InQueue))
    }

    /// Notes a request from `worker` (any: take, ping, post, job-stop).
    pub(crate) fn seen(&mut self, worker: &str, now: Instant) {
        let entry = self.workers.entry(worker.to_owned()).or_default();
        entry.last_seen = Some(now);
        entry.unhealthy = false;
    }

    /// A worker process the endpoint started, not serving yet; it replaces `previous`.
    pub(crate) fn started(&mut self, worker: &str, previous: Option<&str>) {
        if let Some(previous) = previous {
            self.workers.remove(previous);
        }
        self.workers.entry(worker.to_owned()).or_default();
    }

    /// A worker whose result asked for a recycle (`stopPod`): it is served no more jobs.
    pub(crate) fn retire(&mut self, worker: &str) {
        if let Some(entry) = self.workers.get_mut(worker) {
            entry.retiring = true;
        }
    }

    pub(crate) fn is_retiring(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|w| w.retiring)
    }

    /// Hands up to `n` queued jobs to `worker`, oldest first: each as the worker receives it.
    /// A retiring worker gets none.
    pub(crate) fn take(&mut self, worker: &str, n: usize, now: Instant) -> Vec<Value> {
        self.seen(worker, now);
        let mut served = Vec::new();
        if self.is_retiring(worker) {
            return served;
        }
        while served.len() < n {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            let Some(record) = self.records.get_mut(&id) else {
                continue;
            };
            record.status = JobStatus::InProgress;
            record.taken = Some(now);
            record.worker = Some(worker.to_owned());
            record.attempts += 1;
            let mut job = Map::new();
            job.insert("id".into(), Value::String(id.clone()));
            job.extend(record.request.iter().map(|(k, v)| (k.clone(), v.clone())));
            served.push(Value::Object(job));
            if let Some(entry) = self.workers.get_mut(worker) {
                entry.held.insert(id);
            }
        }
        served
    }

    /// The record of a job `worker` holds and is still running.
    fn held(&mut self, worker: &str, id: &str) -> Option<&mut Record> {
        self.records.get_mut(id).filter(|record| {
            record.status == JobStatus::InProgress && record.worker.as_deref() == Some(worker)
        })
    }

    /// A progress update (`{"status": "IN_PROGRESS", "output": ...}` on job-done).
    pub(crate) fn progress(&mut self, worker: &str, id: &str, output: Value, now: Instant) {
        self.seen(worker, now);
        if let Some(record) = self.held(worker, id) {
            record.progress = Some(output);
        }
    }

    /// A stream part (`{"output": ...}` on job-stream).
    pub(crate) fn part(&mut self, worker: &str, id: &str, output: Value, now: Instant) {
        self.seen(worker, now);
        if let Some(record) = self.held(worker, id) {
            record.parts.push(output);
        }
    }

    /// A job's final result (job-done); ignored unless `worker` still holds the job.
    pub(crate) fn done(
        &mut self,
        worker: &str,
        id: &str,
        mut body: Map<String, Value>,
        is_stream: bool,
        now: Instant,
    ) -> Option<Ended> {
        self.seen(worker, now);
        let record = self.held(worker, id)?;
        let error = body.remove("error").filter(crate::body::is_truthy);
        let mut output = body.remove("output");
        // The SDK's streaming workers end with `{"output": []}`: the parts are the output.
        let empty = matches!(&output, Some(Value::Array(items)) if items.is_empty());
        if is_stream && empty && !record.parts.is_empty() {
            output = Some(Value::Array(record.parts.clone()));
        }
        let status = if error.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Completed
        };
        record.output = output;
        record.error = error;
        self.end(id, status, now)
    }

    /// Ends a job: its state, its timers, its worker's hold; the webhook to call.
    fn end(&mut self, id: &str, status: JobStatus, now: Instant) -> Option<Ended> {
        let record = self.records.get_mut(id)?;
        let was_running = record.status == JobStatus::InProgress;
        record.status = status;
        record.ended = Some(now);
        record.progress = None;
        match status {
            JobStatus::Completed => self.completed += 1,
            JobStatus::Failed | JobStatus::TimedOut => self.failed += 1,
            _ => {}
        }
        if let Some(worker) = record.worker.clone().and_then(|w| self.workers.get_mut(&w)) {
            worker.held.remove(id);
            // A job ended here, not by its worker: the worker is told to stop it.
            if was_running && matches!(status, JobStatus::Cancelled | JobStatus::TimedOut) {
                worker.to_stop.push(id.to_owned());
            }
        }
        self.queue.retain(|queued| queued != id);
        let report = self.report(id)?;
        let webhook = self.records.get(id)?.request.get("webhook")?.as_str()?;
        Some(Ended {
            webhook: webhook.to_owned(),
            report,
        })
    }

    /// `/cancel`: ends a queued or running job `CANCELLED`; an ended job is left as it is.
    pub(crate) fn cancel(&mut self, id: &str, now: Instant) -> Option<(JobReport, Option<Ended>)> {
        let status = self.records.get(id)?.status;
        let ended = if status.is_final() {
            None
        } else {
            self.end(id, JobStatus::Cancelled, now)
        };
        Some((self.report(id)?, ended))
    }

    /// `/retry`: queues a `FAILED` or `TIMED_OUT` job again under its id, its result cleared.
    pub(crate) fn retry(&mut self, id: &str) -> Option<Result<JobReport, Refused>> {
        let record = self.records.get_mut(id)?;
        if !matches!(record.status, JobStatus::Failed | JobStatus::TimedOut) {
            return Some(Err(Refused(format!(
                "only a FAILED or TIMED_OUT job can be retried; this one is {}",
                record.status
            ))));
        }
        record.output = None;
        record.error = None;
        record.ended = None;
        self.retried += 1;
        self.requeue(id);
        Some(Ok(JobReport::bare(id, JobStatus::InQueue)))
    }

    /// Puts a job back at the head of the queue, as if never taken.
    fn requeue(&mut self, id: &str) {
        let Some(record) = self.records.get_mut(id) else {
            return;
        };
        record.status = JobStatus::InQueue;
        record.taken = None;
        record.worker = None;
        record.progress = None;
        record.parts.clear();
        record.streamed = 0;
        self.queue.push_front(id.to_owned());
    }

    /// `/purge-queue`: every queued job ends `CANCELLED`; how many, and their webhooks.
    pub(crate) fn purge(&mut self, now: Instant) -> (u64, Vec<Ended>) {
        let queued: Vec<String> = self.queue.drain(..).collect();
        let ended = queued
            .iter()
            .filter_map(|id| self.end(id, JobStatus::Cancelled, now))
            .collect();
        (queued.len() as u64, ended)
    }

    /// A worker process exited: the jobs it held are queued again (or fail, when they have
    /// been taken `max_attempts` times); the webhooks of those that failed.
    pub(crate) fn exited(&mut self, worker: &str, now: Instant) -> Vec<Ended> {
        let Some(entry) = self.workers.get_mut(worker) else {
            return Vec::new();
        };
        entry.unhealthy = true;
        entry.to_stop.clear();
        let held: Vec<String> = std::mem::take(&mut entry.held).into_iter().collect();
        let reason = format!("its worker {worker} exited while running it");
        held.iter()
            .filter_map(|id| self.give_back(id, &reason, now))
            .collect()
    }

    /// A job whose worker is gone: queued again, or failed once taken `max_attempts` times.
    fn give_back(&mut self, id: &str, reason: &str, now: Instant) -> Option<Ended> {
        let record = self.records.get_mut(id)?;
        if record.status != JobStatus::InProgress {
            return None;
        }
        if record.attempts >= self.limits.max_attempts {
            record.error = Some(Value::String(format!(
                "the job was taken {} times and never finished; last: {reason}",
                record.attempts
            )));
            record.worker = None;
            return self.end(id, JobStatus::Failed, now);
        }
        self.retried += 1;
        tracing::warn!("Job {id} queued again: {reason}.");
        self.requeue(id);
        None
    }

    /// The jobs `worker` is to stop, handed over once.
    pub(crate) fn stops(&mut self, worker: &str, now: Instant) -> Vec<String> {
        self.seen(worker, now);
        self.workers
            .get_mut(worker)
            .map(|w| std::mem::take(&mut w.to_stop))
            .unwrap_or_default()
    }

    /// `/status`: `None` for an unknown (or no longer kept) job.
    pub(crate) fn report(&self, id: &str) -> Option<JobReport> {
        let record = self.records.get(id)?;
        let millis = |d: Duration| d.as_millis().try_into().unwrap_or(u64::MAX);
        let (output, error) = match record.status {
            JobStatus::InProgress => (record.progress.clone(), None),
            _ => (record.output.clone(), record.error.clone()),
        };
        Some(JobReport {
            delay_time: record.taken.map(|t| millis(t - record.submitted)),
            error,
            execution_time: record
                .taken
                .zip(record.ended)
                .map(|(taken, ended)| millis(ended - taken)),
            id: id.to_owned(),
            output,
            status: record.status,
            worker_id: record.worker.clone(),
        })
    }

    /// `/stream`: the parts not returned before; `None` for an unknown job.
    pub(crate) fn stream(&mut self, id: &str) -> Option<StreamReport> {
        let record = self.records.get_mut(id)?;
        let stream = record.parts[record.streamed..]
            .iter()
            .map(|part| StreamChunk {
                output: part.clone(),
            })
            .collect();
        record.streamed = record.parts.len();
        Some(StreamReport {
            status: record.status,
            stream,
        })
    }

    pub(crate) fn health(&self) -> Health {
        let in_progress = self
            .records
            .values()
            .filter(|r| r.status == JobStatus::InProgress)
            .count() as u64;
        let mut workers = WorkerCounts::default();
        for worker in self.workers.values() {
            match (worker.unhealthy, worker.last_seen, worker.held.is_empty()) {
                (true, _, _) => workers.unhealthy += 1,
                (false, None, _) => workers.initializing += 1,
                (false, Some(_), true) => workers.idle += 1,
                (false, Some(_), false) => workers.running += 1,
            }
        }
        workers.ready = workers.idle + workers.running;
        Health {
            jobs: JobCounts {
                completed: self.completed,
                failed: self.failed,
                in_progress,
                in_queue: self.queue.len() as u64,
                retried: self.retried,
            },
            workers,
        }
    }

    /// Applies every timer due at `now`: execution timeouts and time-to-live (`TIMED_OUT`),
    /// silent workers (their jobs queued again), results past their retention (dropped).
    pub(crate) fn sweep(&mut self, now: Instant) -> Sweep {
        let mut sweep = Sweep::default();
        let ids: Vec<String> = self.records.keys().cloned().collect();
        for id in ids {
            if let Some(ended) = self.time_out(&id, now) {
                sweep.ended.push(ended);
            }
        }
        self.records.retain(|_, record| {
            record
                .ended
                .is_none_or(|ended| ended + keep(&self.limits, record) > now)
        });
        sweep.silent = self.give_up_silent(now, &mut sweep.ended);
        sweep.next = self.next_deadline();
        sweep
    }

    /// Ends job `id` `TIMED_OUT` when one of its limits has passed.
    fn time_out(&mut self, id: &str, now: Instant) -> Option<Ended> {
        let record = self.records.get_mut(id)?;
        let millis = |d: Duration| d.as_millis();
        let reason = match (record.status, record.taken) {
            (JobStatus::InQueue | JobStatus::InProgress, _)
                if record.submitted + record.ttl <= now =>
            {
                format!(
                    "the job's time-to-live of {} ms ran out before it finished",
                    millis(record.ttl)
                )
            }
            (JobStatus::InProgress, Some(taken)) if taken + record.execution_timeout <= now => {
                format!(
                    "the job ran longer than its execution timeout of {} ms",
                    millis(record.execution_timeout)
                )
            }
            _ => return None,
        };
        record.error = Some(Value::String(reason));
        self.end(id, JobStatus::TimedOut, now)
    }

    /// Workers holding jobs that have not been heard from within the ping timeout.
    fn give_up_silent(&mut self, now: Instant, ended: &mut Vec<Ended>) -> Vec<String> {
        let timeout = self.limits.ping_timeout;
        let silent: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.held.is_empty())
            .filter(|(_, w)| w.last_seen.is_some_and(|seen| seen + timeout <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for worker in &silent {
            let Some(entry) = self.workers.get_mut(worker) else {
                continue;
            };
            entry.unhealthy = true;
            let held: Vec<String> = std::mem::take(&mut entry.held).into_iter().collect();
            let reason = format!(
                "its worker {worker} sent nothing for {} s",
                timeout.as_secs()
            );
            ended.extend(
                held.iter()
                    .filter_map(|id| self.give_back(id, &reason, now)),
            );
        }
        silent
    }

    /// The earliest instant a timer is due.
    fn next_deadline(&self) -> Option<Instant> {
        let jobs = self.records.values().flat_map(|record| {
            let running = record
                .taken
                .filter(|_| record.status == JobStatus::InProgress);
            [
                (!record.status.is_final()).then(|| record.submitted + record.ttl),
                running.map(|taken| taken + record.execution_timeout),
                record.ended.map(|ended| ended + keep(&self.limits, record)),
            ]
        });
        let workers = self
            .workers
            .values()
            .filter(|w| !w.held.is_empty())
            .map(|w| w.last_seen.map(|seen| seen + self.limits.ping_timeout));
        jobs.chain(workers).flatten().min()
    }
}

/// How long an ended job's result is kept.
fn keep(limits: &Limits, record: &Record) -> Duration {
    if record.sync {
        limits.keep_sync
    } else {
        limits.keep_async
    }
}

/// A policy limit in milliseconds within RunPod's bounds, or the endpoint's default.
fn bounded(
    name: &str,
    millis: Option<u64>,
    min: Duration,
    default: Duration,
) -> Result<Duration, Refused> {
    let Some(millis) = millis else {
        return Ok(default);
    };
    let limit = Duration::from_millis(millis);
    if limit < min || limit > MAX_POLICY {
        return Err(Refused(format!(
            "policy.{name} must be between {} and {} ms, not {millis}",
            min.as_millis(),
            MAX_POLICY.as_millis()
        )));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        execution_timeout: Duration::from_secs(600),
        ttl: Duration::from_secs(86_400),
        keep_async: Duration::from_secs(1_800),
        keep_sync: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(30),
        max_attempts: 3,
    };

    fn request(body: Value) -> Map<String, Value> {
        match body {
            Value::Object(map) => map,
            _ => unreachable!("a test request is an object"),
        }
    }

    fn submit(jobs: &mut Jobs, body: Value, at: Instant) -> String {
        jobs.submit(request(body), false, at).expect("accepted").id
    }

    fn ids(served: &[Value]) -> Vec<&str> {
        served.iter().filter_map(|job| job["id"].as_str()).collect()
    }

    fn status(jobs: &Jobs, id: &str) -> JobStatus {
        jobs.report(id).expect("known").status
    }

    #[test]
    fn jobs_are_served_oldest_first_with_everything_submitted_and_timed_from_submission() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let a = submit(
            &mut jobs,
            json!({"input": {"n": 1}, "policy": {"ttl": 60000}}),
            t0,
        );
        let b = submit(&mut jobs, json!({"input": {"n": 2}}), t0);
        let c = submit(&mut jobs, json!({"input": {"n": 3}}), t0);
        let served = jobs.take("w1", 2, t0 + Duration::from_millis(250));
        assert_eq!(ids(&served), [a.as_str(), b.as_str()]);
        assert_eq!(
            served[0],
            json!({"id": a, "input": {"n": 1}, "policy": {"ttl": 60000}})
        );
        assert_eq!(ids(&jobs.take("w2", 5, t0)), [c.as_str()]);
        assert!(jobs.take("w2", 1, t0).is_empty());
        let running = jobs.report(&a).expect("known");
        assert_eq!(running.status, JobStatus::InProgress);
        assert_eq!(running.delay_time, Some(250));
        assert_eq!(running.worker_id.as_deref(), Some("w1"));
        assert_eq!(running.execution_time, None);
        let t1 = t0 + Duration::from_millis(1_250);
        jobs.done(
            "w1",
            &a,
            request(json!({"output": {"ok": true}})),
            false,
            t1,
        );
        let done = jobs.report(&a).expect("known");
        assert_eq!(
            serde_json::to_value(&done).expect("writes"),
            json!({"delayTime": 250, "executionTime": 1000, "id": a, "output": {"ok": true},
                   "status": "COMPLETED", "workerId": "w1"})
        );
    }

    #[test]
    fn a_result_with_a_truthy_error_fails_the_job_and_progress_shows_only_while_it_runs() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let failing = submit(&mut jobs, json!({"input": {}}), t0);
        let fine = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 2, t0);
        jobs.progress("w1", &failing, json!("step 1/2"), t0);
        assert_eq!(
            jobs.report(&failing).expect("known").output,
            Some(json!("step 1/2"))
        );
        jobs.done("w1", &failing, request(json!({"error": "boom"})), false, t0);
        jobs.done(
            "w1",
            &fine,
            request(json!({"output": 1, "error": ""})),
            false,
            t0,
        );
        let failed = jobs.report(&failing).expect("known");
        assert_eq!(
            (failed.status, failed.error, failed.output),
            (JobStatus::Failed, Some(json!("boom")), None)
        );
        assert_eq!(status(&jobs, &fine), JobStatus::Completed);
        let health = jobs.health();
        assert_eq!((health.jobs.completed, health.jobs.failed), (1, 1));
    }

    #[test]
    fn stream_parts_are_read_once_and_become_the_output_of_an_sdk_style_empty_final_result() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 1, t0);
        jobs.part("w1", &id, json!("a"), t0);
        jobs.part("w1", &id, json!({"b": 2}), t0);
        let first = jobs.stream(&id).expect("known");
        assert_eq!(first.status, JobStatus::InProgress);
        assert_eq!(first.stream.len(), 2);
        jobs.part("w1", &id, json!("c"), t0);
        jobs.done("w1", &id, request(json!({"output": []})), true, t0);
        let rest = jobs.stream(&id).expect("known");
        assert_eq!((rest.status, rest.stream.len()), (JobStatus::Completed, 1));
        assert_eq!(rest.stream[0].output, json!("c"));
        assert!(jobs.stream(&id).expect("known").stream.is_empty());
        assert_eq!(
            jobs.report(&id).expect("known").output,
            Some(json!(["a", {"b": 2}, "c"]))
        );
    }

    #[test]
    fn cancelling_a_running_job_tells_its_worker_once_and_its_late_result_is_ignored() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let queued = submit(&mut jobs, json!({"input": {}}), t0);
        let (report, _) = jobs.cancel(&queued, t0).expect("known");
        assert_eq!(report.status, JobStatus::Cancelled);
        assert!(
            jobs.take("w1", 1, t0).is_empty(),
            "a cancelled job is not served"
        );
        let running = submit(
            &mut jobs,
            json!({"input": {}, "webhook": "http://127.0.0.1:9/hook"}),
            t0,
        );
        jobs.take("w1", 1, t0);
        let (report, ended) = jobs.cancel(&running, t0).expect("known");
        assert_eq!(report.status, JobStatus::Cancelled);
        assert_eq!(
            ended.expect("a webhook").report.status,
            JobStatus::Cancelled
        );
        assert_eq!(jobs.stops("w1", t0), std::slice::from_ref(&running));
        assert!(jobs.stops("w1", t0).is_empty());
        assert!(
            jobs.done("w1", &running, request(json!({"output": 1})), false, t0)
                .is_none()
        );
        assert_eq!(status(&jobs, &running), JobStatus::Cancelled);
        let (again, ended) = jobs.cancel(&running, t0).expect("known");
        assert_eq!((again.status, ended), (JobStatus::Cancelled, None));
    }

    #[test]
    fn the_execution_timeout_counts_from_the_take_and_stops_the_worker() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(
            &mut jobs,
            json!({"input": {}, "policy": {"executionTimeout": 5000}}),
            t0,
        );
        let taken = t0 + Duration::from_secs(2);
        jobs.take("w1", 1, taken);
        let before = jobs.sweep(taken + Duration::from_millis(4_999));
        assert_eq!(status(&jobs, &id), JobStatus::InProgress);
        assert_eq!(before.next, Some(taken + Duration::from_secs(5)));
        let at = jobs.sweep(taken + Duration::from_secs(5));
        assert!(at.ended.is_empty(), "no webhook was asked for");
        let report = jobs.report(&id).expect("known");
        assert_eq!(report.status, JobStatus::TimedOut);
        assert_eq!(report.execution_time, Some(5_000));
        assert_eq!(
            report.error,
            Some(json!(
                "the job ran longer than its execution timeout of 5000 ms"
            ))
        );
        assert_eq!(jobs.stops("w1", t0), [id]);
        assert_eq!(jobs.health().jobs.failed, 1);
    }

    #[test]
    fn the_time_to_live_counts_from_submission_and_ends_a_job_never_taken() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(
            &mut jobs,
            json!({"input": {}, "policy": {"ttl": 10000}}),
            t0,
        );
        assert_eq!(jobs.sweep(t0).next, Some(t0 + Duration::from_secs(10)));
        jobs.sweep(t0 + Duration::from_secs(10));
        let report = jobs.report(&id).expect("known");
        assert_eq!(
            (report.status, report.delay_time, report.worker_id),
            (JobStatus::TimedOut, None, None)
        );
        assert!(jobs.take("w1", 1, t0 + Duration::from_secs(11)).is_empty());
    }

    #[test]
    fn policies_outside_runpods_bounds_and_requests_without_input_are_refused() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        for (body, why) in [
            (
                json!({"input": {}, "policy": {"executionTimeout": 4999}}),
                "policy.executionTimeout must be between 5000 and 604800000 ms, not 4999",
            ),
            (
                json!({"input": {}, "policy": {"ttl": 9999}}),
                "policy.ttl must be between 10000 and 604800000 ms, not 9999",
            ),
            (json!({"prompt": "x"}), "the request has no \"input\""),
        ] {
            assert_eq!(
                jobs.submit(request(body), false, t0),
                Err(Refused(why.into()))
            );
        }
        assert_eq!(jobs.health().jobs.in_queue, 0);
    }

    #[test]
    fn a_dead_workers_jobs_go_back_to_the_head_of_the_queue_until_the_attempts_run_out() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(
            &mut jobs,
            json!({"input": {}, "webhook": "http://127.0.0.1:9/hook"}),
            t0,
        );
        let later = submit(&mut jobs, json!({"input": {}}), t0);
        for attempt in 1..=2 {
            let worker = format!("w{attempt}");
            jobs.started(&worker, None);
            assert_eq!(ids(&jobs.take(&worker, 1, t0)), [id.as_str()]);
            jobs.part(&worker, &id, json!("partial"), t0);
            assert!(jobs.exited(&worker, t0).is_empty());
            assert_eq!(status(&jobs, &id), JobStatus::InQueue);
            assert!(jobs.stream(&id).expect("known").stream.is_empty());
        }
        assert_eq!(jobs.health().jobs.retried, 2);
        assert_eq!(jobs.health().workers.unhealthy, 2);
        jobs.take("w3", 1, t0);
        let ended = jobs.exited("w3", t0);
        assert_eq!(ended.len(), 1, "the failure calls the webhook");
        let failed = jobs.report(&id).expect("known");
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(
            failed.error_text().as_deref(),
            Some(
                "the job was taken 3 times and never finished; last: its worker w3 exited while running it"
            )
        );
        assert_eq!(ids(&jobs.take("w4", 1, t0)), [later.as_str()]);
    }

    #[test]
    fn a_worker_silent_past_the_ping_timeout_loses_its_jobs_and_is_named_for_replacement() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 1, t0);
        jobs.seen("w1", t0 + Duration::from_secs(10));
        jobs.seen("idle", t0);
        assert!(jobs.sweep(t0 + Duration::from_secs(39)).silent.is_empty());
        let sweep = jobs.sweep(t0 + Duration::from_secs(40));
        assert_eq!(sweep.silent, ["w1"]);
        assert_eq!(status(&jobs, &id), JobStatus::InQueue);
        let health = jobs.health();
        assert_eq!(
            (
                health.jobs.retried,
                health.workers.unhealthy,
                health.workers.idle
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn results_are_kept_thirty_minutes_after_run_and_one_minute_after_runsync() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let run = submit(&mut jobs, json!({"input": {}}), t0);
        let sync = jobs
            .submit(request(json!({"input": {}})), true, t0)
            .expect("accepted")
            .id;
        assert!(sync.starts_with("sync-"));
        jobs.take("w1", 2, t0);
        jobs.done("w1", &run, request(json!({"output": 1})), false, t0);
        jobs.done("w1", &sync, request(json!({"output": 2})), false, t0);
        jobs.sweep(t0 + Duration::from_secs(60));
        assert!(jobs.report(&sync).is_none());
        assert!(jobs.report(&run).is_some());
        jobs.sweep(t0 + Duration::from_secs(1_800));
        assert!(jobs.report(&run).is_none());
    }

    #[test]
    fn retry_queues_a_failed_job_again_under_its_id_and_refuses_a_completed_one() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let id = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 1, t0);
        jobs.done("w1", &id, request(json!({"error": "boom"})), false, t0);
        let report = jobs.retry(&id).expect("known").expect("accepted");
        assert_eq!(report, JobReport::bare(id.clone(), JobStatus::InQueue));
        assert_eq!(jobs.report(&id).expect("known").error, None);
        assert_eq!(jobs.health().jobs.retried, 1);
        jobs.take("w1", 1, t0);
        jobs.done("w1", &id, request(json!({"output": 1})), false, t0);
        let refused = jobs.retry(&id).expect("known");
        assert_eq!(
            refused,
            Err(Refused(
                "only a FAILED or TIMED_OUT job can be retried; this one is COMPLETED".into()
            ))
        );
    }

    #[test]
    fn purging_cancels_the_queued_jobs_and_leaves_running_ones_alone() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        let running = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 1, t0);
        let queued = [
            submit(&mut jobs, json!({"input": {}}), t0),
            submit(&mut jobs, json!({"input": {}}), t0),
        ];
        let (removed, _) = jobs.purge(t0);
        assert_eq!(removed, 2);
        assert!(
            queued
                .iter()
                .all(|id| status(&jobs, id) == JobStatus::Cancelled)
        );
        assert_eq!(status(&jobs, &running), JobStatus::InProgress);
        let health = jobs.health().jobs;
        assert_eq!((health.in_queue, health.in_progress), (0, 1));
    }

    #[test]
    fn workers_count_as_initializing_until_their_first_request_then_idle_or_running() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        jobs.started("w1", None);
        jobs.started("w2", None);
        assert_eq!(jobs.health().workers.initializing, 2);
        submit(&mut jobs, json!({"input": {}}), t0);
        jobs.take("w1", 1, t0);
        jobs.seen("w2", t0);
        let workers = jobs.health().workers;
        assert_eq!(
            (
                workers.initializing,
                workers.idle,
                workers.running,
                workers.ready
            ),
            (0, 1, 1, 2)
        );
        jobs.started("w1-1", Some("w1"));
        assert_eq!(jobs.health().workers.initializing, 1);
    }

    #[test]
    fn a_worker_asked_to_recycle_is_served_no_more_jobs() {
        let (mut jobs, t0) = (Jobs::new(LIMITS), Instant::now());
        jobs.started("w1", None);
        jobs.started("w2", None);
        let id = submit(&mut jobs, json!({"input": {}}), t0);
        jobs.retire("w1");
        assert!(jobs.take("w1", 1, t0).is_empty());
        assert_eq!(ids(&jobs.take("w2", 1, t0)), [id.as_str()]);
    }
}
