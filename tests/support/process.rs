//! Runs a worker binary (an example or a crate's binary) as a child process with a given
//! environment, collects its stdout lines and lets tests signal it.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// Where cargo put the binaries of the running test (`target/<profile>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The path of an example of the root package, built here in the profile of the running test
/// or benchmark (release for `cargo bench`), so that a test run alone (`cargo test --test x`)
/// never drives a stale binary.
pub fn example(name: &str) -> PathBuf {
    cargo_build(
        &["--example", name],
        target_dir().join("examples").join(name),
    )
}

/// The environment of a `protocol_probe` worker that behaves as the `echo` example (returns
/// its input), so the wire tests need one fixture binary.
pub fn as_echo(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.push(("PROBE_ECHO".into(), "1".into()));
    env
}

/// The path of a workspace package's binary (a fixture worker of tests/bin/, or a crate's
/// binary such as `mineru-handler`), built here in the profile of the running test: the root
/// package does not depend on other packages' binaries, so `cargo test` does not build them.
pub fn bin(name: &str) -> PathBuf {
    cargo_build(&["--bin", name], target_dir().join(name))
}

/// `cargo build <what>` in the running test's profile, once per process; a no-op when the
/// binary is fresh. `--workspace` with an example among the targets makes cargo resolve
/// features as `cargo test --workspace --all-targets` does (dev-dependencies included), so the
/// build reuses that run's dependencies instead of compiling a second set.
fn cargo_build(what: &[&str], path: PathBuf) -> PathBuf {
    static BUILT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.contains(&path) {
        return path;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--quiet", "--workspace"];
    args.extend_from_slice(what);
    if !what.contains(&"--example") {
        args.extend(["--example", "echo"]);
    }
    if target_dir().ends_with("release") {
        args.push("--release");
    }
    let status = std::process::Command::new(cargo)
        .args(&args)
        .status()
        .expect("run cargo build");
    assert!(
        status.success() && path.exists(),
        "cannot build {}",
        what.join(" ")
    );
    built.push(path.clone());
    path
}

/// A running worker process.
pub struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
    /// The stdout reader; joined on exit so that no line is missed.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Starts `program` with `args`, the given environment (nothing else of the RunPod
    /// environment leaks in from the test's own), in `dir` if given.
    pub fn spawn(
        program: &std::path::Path,
        args: &[&str],
        env: &[(String, String)],
        dir: Option<&std::path::Path>,
    ) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            if key.starts_with("RUNPOD_") || key.starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let (sink, notify) = (Arc::clone(&lines), Arc::clone(&new_line));
        let reader = tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[worker] {line}");
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                notify.notify_waiters();
            }
            notify.notify_waiters();
        });
        Self {
            child,
            lines,
            new_line,
            reader: Some(reader),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a stdout line containing `needle`.
    pub async fn wait_for_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.new_line.notified();
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no line containing {needle:?} within {limit:?}; output:\n{}",
                    self.lines().join("\n")
                );
            }
        }
    }

    /// Sends a signal (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the worker is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pid}");
    }

    /// Waits for the process to exit and for its last stdout line; its exit code.
    pub async fn wait(&mut self, limit: Duration) -> i32 {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the worker did not exit within {limit:?}; output:\n{}",
                    self.lines().join("\n")
                )
            })
            .expect("wait for the worker");
        if let Some(reader) = self.reader.take() {
            // The pipe closes with the process (unless it left children holding it).
            let _ = tokio::time::timeout(limit, reader).await;
        }
        status.code().unwrap_or(-1)
    }
}
