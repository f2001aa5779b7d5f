//! A FlashBoot restore in worker mode, in-process: the restore is announced through the
//! worker's own [`Detector`] (the clock rule itself is tested in `restore::detect`), the
//! resources are ordinary [`RestoreResource`]s, and the FAKE endpoint numbers its connections.

use super::*;
use futures_util::future::BoxFuture;

/// Records how many requests the endpoint had answered when its hook ran; fails when told to.
struct Probe {
    fake: FakeEndpoint,
    ran: Mutex<Vec<usize>>,
    fail: bool,
}

impl RestoreResource for Probe {
    fn after_restore(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let answered = self.fake.exchanges().len();
            self.ran
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(answered);
            if self.fail {
                return Err("mineru-api did not answer within 10s after the restore".into());
            }
            Ok(())
        })
    }

    fn name(&self) -> &str {
        "engine"
    }
}

fn probe(queue: &Queue, fail: bool) -> Arc<Probe> {
    Arc::new(Probe {
        fake: queue.fake.clone(),
        ran: Mutex::new(Vec::new()),
        fail,
    })
}

fn restoring(queue: &Queue, probe: &Arc<Probe>) -> (&'static Detector, Running) {
    let detector: &'static Detector = Box::leak(Box::new(Detector::new()));
    let restore = Restore {
        detector,
        resources: vec![Arc::clone(probe) as Arc<dyn RestoreResource>],
    };
    // The runtime's stack, its jobs held at the gate a failed restore closes.
    let gate = Gate::new();
    let handler = service_fn(|job: Job<Value>| async move { Ok::<_, JobError>(job.input) });
    let (_, assembly) = Runtime::new(crate::testing::config()).split(handler);
    let service = assembly.behind(gate.clone()).assemble();
    let config = queue.config(&[]);
    let worker = Running::restoring(config, Concurrency::default(), service, gate, restore);
    (detector, worker)
}

#[tokio::test(start_paused = true)]
async fn after_a_restore_the_hooks_run_and_the_next_job_goes_out_on_fresh_connections() {
    let queue = Queue::start().await;
    let probe = probe(&queue, false);
    let (detector, worker) = restoring(&queue, &probe);
    queue.push_job(json!({"id": "before", "input": 1}));
    queue.result_of("before").await;
    let before = queue.fake.exchanges();
    assert!(
        probe
            .ran
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    );

    detector.restored(Duration::from_secs(3600));
    queue.push_job(json!({"id": "after", "input": 2}));
    let after = queue.result_of("after").await;
    assert_eq!(text(&after), r#"{"output": 2}"#);
    worker.stop().await;

    let ran = probe.ran.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(ran.len(), 1, "one restore, one run: {ran:?}");
    let exchanges = queue.fake.exchanges();
    let posted = exchanges.iter().position(|e| e.path.contains("/after?"));
    assert!(
        posted.is_some_and(|at| at >= ran[0]),
        "the hook ran before the job's result was posted"
    );
    // Every request after the hook went out on a connection the worker never used before.
    let old = before.iter().map(|e| e.connection).max().unwrap_or(0);
    let fresh = &exchanges[ran[0]..];
    assert!(!fresh.is_empty());
    assert!(
        fresh.iter().all(|e| e.connection > old),
        "reused a connection from before the restore: {:?}",
        fresh
            .iter()
            .map(|e| (&e.path, e.connection))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_fails_after_a_restore_is_reported_to_the_next_job_and_ends_the_worker() {
    let queue = Queue::start().await;
    let probe = probe(&queue, true);
    let (detector, worker) = restoring(&queue, &probe);
    queue.push_job(json!({"id": "before", "input": 1}));
    queue.result_of("before").await;

    detector.restored(Duration::from_secs(3600));
    queue.push_job(json!({"id": "after", "input": 2}));
    let reported = queue.result_of("after").await;
    let body: Value = serde_json::from_slice(&reported.body).expect("JSON");
    let payload: Value =
        serde_json::from_str(body["error"].as_str().expect("an error string")).expect("JSON");
    assert_eq!(payload["event"], "prestart_failed", "{payload}");
    assert_eq!(payload["hook"], "after_restore (engine)");
    assert_eq!(
        payload["error_message"],
        "mineru-api did not answer within 10s after the restore"
    );
    match worker.ended().await {
        Err(Error::StartFailed { hook, .. }) => assert_eq!(hook, "after_restore (engine)"),
        other => panic!("the worker should end with the failed restore: {other:?}"),
    }
    assert_eq!(probe.ran.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    assert_eq!(queue.posts_of("after").len(), 1, "answered once");
}
