//! The chaos test: a seeded, fault-injecting FAKE queue drives the echo worker over a few
//! hundred jobs on paused time — 5xx and 429 answers, resets, truncated and garbage take
//! answers, slow answers, a network cut, jobs served again (while running and after their
//! result), and poison shapes (deep nesting, numeric ids, ids that are lists) — and checks
//! that no job is lost, none runs twice, every accepted result is right, and the worker keeps
//! taking jobs to the end.

use super::*;

const JOBS: usize = 300;
const SEED: u64 = 16;

/// The FAKE queue's state, every decision drawn from one seeded generator.
struct Chaos {
    rng: fastrand::Rng,
    queue: VecDeque<Value>,
    /// Jobs already handed out, for serving again.
    handed: Vec<Value>,
    faults: HashMap<&'static str, usize>,
}

impl Chaos {
    fn fault(&mut self, name: &'static str, reply: Reply) -> Reply {
        *self.faults.entry(name).or_default() += 1;
        reply
    }

    fn take(&mut self, path: &str) -> Reply {
        let (roll, status) = (self.rng.f64(), 500 + self.rng.u16(0..4));
        match roll {
            r if r < 0.05 => {
                return self.fault("take 5xx", Reply::status(status));
            }
            r if r < 0.07 => return self.fault("take 429", Reply::status(429)),
            r if r < 0.10 => return self.fault("take reset", Reply::fault(Fault::Reset)),
            r if r < 0.12 => {
                return self.fault("take garbage", Reply::json("{\"id\": \"x\", \"in"));
            }
            r if r < 0.13 => return self.fault("take stall", Reply::fault(Fault::Stall)),
            _ => {}
        }
        let wanted = query(path, "batch_size").unwrap_or(1);
        let mut jobs: Vec<Value> = Vec::new();
        while jobs.len() < wanted {
            let again = !self.handed.is_empty() && self.rng.f64() < 0.06;
            let job = if again {
                *self.faults.entry("job served again").or_default() += 1;
                self.handed[self
                    .rng
                    .usize(self.handed.len().saturating_sub(8)..self.handed.len())]
                .clone()
            } else {
                match self.queue.pop_front() {
                    Some(job) => job,
                    None => break,
                }
            };
            jobs.push(job);
        }
        if jobs.is_empty() {
            return Reply::status(204).after(LONG_POLL);
        }
        let body = if wanted > 1 {
            Value::Array(jobs.clone()).to_string()
        } else {
            jobs[0].to_string()
        };
        let delay = Duration::from_millis(self.rng.u64(0..1500));
        if self.rng.f64() < 0.05 {
            // Lost in transit: the platform serves these jobs again later.
            for job in jobs.into_iter().rev() {
                self.queue.push_front(job);
            }
            let reply = Reply {
                body: Some(body),
                ..Reply::fault(Fault::Truncate)
            };
            return self.fault("take truncated", reply);
        }
        self.handed.extend(jobs);
        Reply::json(&body).after(delay)
    }

    fn post(&mut self) -> Reply {
        let delay = Duration::from_millis(self.rng.u64(0..2000));
        let (roll, status) = (self.rng.f64(), 500 + self.rng.u16(0..4));
        match roll {
            r if r < 0.08 => self.fault("post 5xx", Reply::status(status)),
            r if r < 0.10 => self.fault("post 429", Reply::status(429)),
            r if r < 0.14 => self.fault("post reset", Reply::fault(Fault::Reset)),
            _ => Reply::status(200).after(delay),
        }
    }
}

/// `levels` arrays around a 1, built without recursion.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

fn query(path: &str, key: &str) -> Option<usize> {
    let query = path.split_once('?')?.1;
    let mut pairs = query.split('&').filter_map(|pair| pair.split_once('='));
    pairs.find(|(k, _)| *k == key)?.1.parse().ok()
}

/// The jobs: echo inputs with a handler delay, some deeply nested (200 levels run, 600 fail),
/// some with numeric ids, and poison ones whose id is a list (never answered: no id to use).
fn jobs(rng: &mut fastrand::Rng) -> (Vec<Value>, HashMap<String, String>) {
    let mut jobs = Vec::new();
    let mut expected = HashMap::new();
    for n in 0..JOBS {
        let (id, input) = match n % 50 {
            7 => (json!(n), json!({"n": n, "sleep_ms": rng.u64(0..3000)})),
            13 => (json!(format!("job-{n}")), nested(200)),
            29 => (json!(format!("job-{n}")), Value::Null),
            _ => (
                json!(format!("job-{n}")),
                json!({"n": n, "text": "é✓", "sleep_ms": rng.u64(0..3000)}),
            ),
        };
        let key = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
        let body = json!({"output": input.clone()});
        expected.insert(
            key,
            String::from_utf8_lossy(&crate::json::to_vec(&body)).into_owned(),
        );
        jobs.push(json!({"id": id, "input": input}));
        if n % 50 == 41 {
            // Poison: too deep to run (an error result), and an id that is a list (skipped).
            let id = format!("deep-{n}");
            jobs.push(json!({"id": id, "input": nested(600)}));
            expected.insert(id, "InvalidJob".into());
            jobs.push(json!({"id": [format!("list-{n}")], "input": 1}));
        }
    }
    (jobs, expected)
}

#[tokio::test(start_paused = true)]
async fn no_job_lost_none_run_twice_every_result_right_under_seeded_faults() {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let (jobs, expected) = jobs(&mut rng);
    let chaos = Arc::new(Mutex::new(Chaos {
        rng,
        queue: jobs.into(),
        handed: Vec::new(),
        faults: HashMap::new(),
    }));
    let shared = Arc::clone(&chaos);
    let fake = FakeEndpoint::serve(move |request: &Request<'_>| {
        let mut chaos = shared.lock().unwrap_or_else(|p| p.into_inner());
        if request.path.starts_with("/take/") {
            chaos.take(request.path)
        } else {
            chaos.post()
        }
    })
    .await;
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counted = Arc::clone(&runs);
    let handler = service_fn(move |job: Job<Value>| {
        let runs = Arc::clone(&counted);
        async move {
            *runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(job.id.clone())
                .or_default() += 1;
            let sleep = job
                .input
                .get("sleep_ms")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(sleep)).await;
            Ok::<_, JobError>(job.input)
        }
    });
    let queue = Queue {
        fake: fake.clone(),
        script: Arc::default(),
    };
    let started = Instant::now();
    let worker = Running::start(queue.config(&[]), Concurrency::fixed(4), stack(handler));
    // A network cut once the worker is busy.
    let cut = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(40)).await;
        cut.cut(Duration::from_secs(20)).await;
    });
    let accepted = |e: &Exchange| e.path.starts_with("/done/") && e.status == Some(200);
    let ids_done = |exchanges: &[Exchange]| {
        let done: std::collections::HashSet<&str> = exchanges
            .iter()
            .filter(|e| accepted(e))
            .filter_map(|e| e.path.split('/').nth(3)?.split('?').next())
            .collect();
        expected.keys().all(|id| done.contains(id.as_str()))
    };
    fake.until(ids_done).await;
    let finished = started.elapsed();
    worker.stop().await;

    let exchanges = fake.exchanges();
    let mut results: HashMap<&str, Vec<&Exchange>> = HashMap::new();
    for exchange in exchanges.iter().filter(|e| accepted(e)) {
        let id = exchange
            .path
            .split('/')
            .nth(3)
            .and_then(|p| p.split('?').next());
        results
            .entry(id.unwrap_or_default())
            .or_default()
            .push(exchange);
    }
    for (id, want) in &expected {
        let posts = &results[id.as_str()];
        for post in posts {
            let got = text(post);
            if want == "InvalidJob" {
                assert!(
                    got.contains("<class 'InvalidJob'>") && got.contains("the limit is 512"),
                    "{id}: {got}"
                );
            } else {
                assert_eq!(&got, want, "{id}");
            }
        }
    }
    let runs = runs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "run twice: {twice:?}");
    assert!(
        results
            .keys()
            .all(|id| !id.starts_with("list") && !id.starts_with("%5B"))
    );
    let faults = chaos
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .faults
        .clone();
    let served_again = faults.get("job served again").copied().unwrap_or(0);
    assert!(served_again >= 5, "{faults:?}");
    for kind in [
        "take 5xx",
        "take reset",
        "take truncated",
        "post 5xx",
        "post reset",
    ] {
        assert!(
            faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {faults:?}"
        );
    }
    // The worker kept taking through the cut and to the end.
    let takes = of(&exchanges, "/take/");
    let after_cut = takes
        .iter()
        .filter(|t| t.arrived - started > Duration::from_secs(60));
    assert!(after_cut.count() > 10);
    eprintln!(
        "chaos: {} jobs done in {:.0} s (paused time), {} takes, {} posts ({} accepted), faults {faults:?}",
        expected.len(),
        finished.as_secs_f64(),
        takes.len(),
        exchanges.len() - takes.len(),
        results.values().map(Vec::len).sum::<usize>()
    );
}
