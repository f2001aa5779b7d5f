//! Telemetry is installed once per process, so every scenario runs in a fresh child process:
//! the test re-executes its own binary, filtered to itself, with the scenario's environment.
//! The test function plays both roles: `is_child()` tells which one it is in.

use std::process::Command;
use std::time::{Duration, Instant};

const ROLE: &str = "RUNPOD_OTEL_TEST_CHILD";

pub fn is_child() -> bool {
    std::env::var_os(ROLE).is_some()
}

/// What a child printed.
#[derive(Debug)]
pub struct ChildOutput {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub elapsed: Duration,
}

impl ChildOutput {
    /// Stdout lines, without the `test name ... ` prefix libtest puts before the first one.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().map(|l| match l.strip_prefix("test ") {
            Some(rest) => rest.split_once(" ... ").map_or(l, |(_, line)| line),
            None => l,
        })
    }

    /// The JSON log lines on stdout.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    /// The `CHILD_REPORT` the job driver printed.
    pub fn report(&self) -> serde_json::Value {
        self.printed("CHILD_REPORT ")
    }

    /// The `CHILD_SHUTDOWN` the job driver printed after shutting telemetry down.
    pub fn shutdown(&self) -> serde_json::Value {
        self.printed("CHILD_SHUTDOWN ")
    }

    fn printed(&self, prefix: &str) -> serde_json::Value {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix}line; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            });
        serde_json::from_str(line).unwrap()
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the test named `test` (the current function) in a child process with `envs`, and
/// none of the parent's telemetry variables.
pub fn run(test: &str, envs: &[(&str, String)]) -> ChildOutput {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_")
            || key.starts_with("RUNPOD_")
            || key == "RUST_LOG"
            || key.starts_with("LOG_")
        {
            command.env_remove(key);
        }
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().unwrap();
    let out = ChildOutput {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
        elapsed: started.elapsed(),
    };
    assert!(out.success, "child {test} failed:\n{}", out.all_output());
    out
}
