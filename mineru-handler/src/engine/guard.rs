//! The engine guard: the worker binary itself, re-executed as the engine's parent, so that no
//! engine process outlives the worker and the engine's API key stays private (docs/engine.md
//! §4.2).
//!
//! A parent-death signal reaches only a direct child, and only while that child lives:
//! MinerU's own subprocesses (render pools, MinerU 3.4's spawn pool) are reparented to init
//! when the worker is SIGKILLed and used to survive it. The guard sits between the worker and
//! `mineru-api`:
//!
//! * it asks for a parent-death signal (`SIGUSR1`) and then checks that the worker is still
//!   its parent (closing the race with a worker that died while the guard started);
//! * it is a child subreaper: every engine descendant whose parent dies is reparented to the
//!   guard, not to init, so the guard can always find them;
//! * when the worker dies, or when `mineru-api` exits by itself, it kills every descendant
//!   (in any process group or session), then exits with the engine's status.
//!
//! The worker's own stop signals the whole process group as before (the guard is its leader
//! and waits for the engine). The API key travels on the engine's standard input: a small
//! Python launcher reads it and appends `--api-key` to `sys.argv` in the process, so it
//! appears neither on a command line (`/proc/<pid>/cmdline`, readable by every user) nor in an
//! environment.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions};

/// Set on the guard's process: the worker's pid. Its presence selects guard mode.
pub(super) const GUARD_PARENT_VAR: &str = "MINERU_ENGINE_GUARD_PARENT";
/// How long the guard keeps sweeping for descendants that are still starting up.
const SWEEP_BUDGET: Duration = Duration::from_secs(5);

/// Runs the guard when this process was started as one (see the module docs); call it first
/// in `main`, before any runtime starts. `None` in a normal worker process.
pub fn run_if_requested() -> Option<ExitCode> {
    let parent = std::env::var(GUARD_PARENT_VAR).ok()?;
    let Some(parent) = parent.parse::<i32>().ok().and_then(Pid::from_raw) else {
        eprintln!("mineru-handler engine guard: {GUARD_PARENT_VAR}={parent:?} is not a pid");
        return Some(ExitCode::FAILURE);
    };
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("mineru-handler engine guard: no engine command");
        return Some(ExitCode::FAILURE);
    };
    let args: Vec<OsString> = args.collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    Some(match runtime {
        Ok(rt) => rt.block_on(guard(parent, &program, &args)),
        Err(e) => {
            eprintln!("mineru-handler engine guard: {e}");
            ExitCode::FAILURE
        }
    })
}

async fn guard(parent: Pid, program: &OsStr, args: &[OsString]) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: the parent-death signal must never find the default action (exit).
    let (Ok(mut death), Ok(mut term)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("mineru-handler engine guard: cannot handle signals");
        return ExitCode::FAILURE;
    };
    let armed = rustix::process::set_parent_process_death_signal(Some(Signal::USR1))
        .and_then(|()| rustix::process::set_child_subreaper(Some(rustix::process::getpid())));
    if let Err(e) = armed {
        eprintln!("mineru-handler engine guard: prctl failed: {e}");
        return ExitCode::FAILURE;
    }
    if rustix::process::getppid() != Some(parent) {
        return ExitCode::FAILURE; // The worker is already gone: start nothing.
    }
    let mut engine = match tokio::process::Command::new(program)
        .args(args)
        .env_remove(GUARD_PARENT_VAR)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "mineru-handler engine guard: could not start {}: {e}",
                Path::new(program).display()
            );
            return ExitCode::from(127);
        }
    };
    let status = loop {
        tokio::select! {
            status = engine.wait() => break status.ok(),
            _ = death.recv() => {
                // A worker thread's exit also sends it; only a new parent means the worker died.
                if rustix::process::getppid() != Some(parent) {
                    break None;
                }
            }
            // The worker's stop signals the whole group; the engine got it too.
            _ = term.recv() => {}
        }
    };
    sweep();
    match status.and_then(|s| s.code()) {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(137),
    }
}

/// Kills every descendant of this process and reaps them, until none is left (bounded).
fn sweep() {
    let me = rustix::process::getpid();
    let deadline = Instant::now() + SWEEP_BUDGET;
    loop {
        let alive = descendants(me);
        for pid in &alive {
            let _ = rustix::process::kill_process(*pid, Signal::KILL);
        }
        // Reparented orphans are our children now: reap whatever has exited.
        while let Ok(Some(_)) = rustix::process::wait(WaitOptions::NOHANG) {}
        if alive.is_empty() || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Living (non-zombie) descendants of `root`, from `/proc`.
fn descendants(root: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let table: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            (state != "Z" && state != "X").then_some((pid, ppid))
        })
        .collect();
    let mut found = vec![root.as_raw_nonzero().get()];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(table.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        at += 1;
    }
    found
        .into_iter()
        .skip(1)
        .filter_map(Pid::from_raw)
        .collect()
}

/// The Python launcher: reads the API key from standard input, then runs the server script
/// with `--api-key` appended to `sys.argv` (which does not change `/proc/<pid>/cmdline`).
const LAUNCHER: &str = r#"import os, runpy, sys
key = sys.stdin.readline().rstrip("\n")
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
script = sys.argv[1]
sys.argv = [script, *sys.argv[2:], "--api-key", key]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
"#;

/// The engine's command line (`argv[0]` is the program) and what to send on its standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineCommand {
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// Sent on the engine's standard input: the key and a newline.
    pub stdin: Option<Vec<u8>>,
}

impl EngineCommand {
    /// `program args`; with `key`, through the Python launcher. `None` when `key` is set but
    /// `program` is no Python script or interpreter (see [`can_pass_key`]).
    pub(super) fn new(
        program: &Path,
        args: &[OsString],
        key: Option<&str>,
    ) -> Option<EngineCommand> {
        let Some(key) = key else {
            let mut argv = vec![program.as_os_str().to_owned()];
            argv.extend(args.iter().cloned());
            return Some(EngineCommand { argv, stdin: None });
        };
        let (mut argv, script, rest) = python_parts(program, args)?;
        argv.extend(["-c".into(), LAUNCHER.into(), script]);
        argv.extend(rest.iter().cloned());
        Some(EngineCommand {
            argv,
            stdin: Some(format!("{key}\n").into_bytes()),
        })
    }

    /// The same command, started by the guard (`guard` is the worker binary).
    pub(super) fn under_guard(mut self, guard: &Path) -> EngineCommand {
        self.argv.insert(0, guard.as_os_str().to_owned());
        self
    }
}

/// Whether a key can reach `program` without a command line: it is a Python script or a
/// Python interpreter running one.
pub(crate) fn can_pass_key(program: &Path, args: &[OsString]) -> bool {
    python_parts(program, args).is_some()
}

/// (interpreter argv, script, remaining args) for a Python program: an interpreter followed
/// by its script, or a script whose `#!` line names Python.
fn python_parts<'a>(
    program: &Path,
    args: &'a [OsString],
) -> Option<(Vec<OsString>, OsString, &'a [OsString])> {
    let name = program.file_name()?.to_str()?;
    if name.starts_with("python") {
        let (script, rest) = args.split_first()?;
        return Some((vec![program.into()], script.clone(), rest));
    }
    let resolved = resolve(program)?;
    let head = std::fs::read(&resolved).ok()?;
    let first = head.split(|b| *b == b'\n').next()?;
    let shebang = std::str::from_utf8(first.strip_prefix(b"#!")?).ok()?;
    if !shebang.contains("python") {
        return None;
    }
    let interpreter = shebang.split_whitespace().map(OsString::from).collect();
    Some((interpreter, resolved.into_os_string(), args))
}

/// `program` as given when it has a directory part, else its first match on `PATH`.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_to_the_launcher_on_stdin_never_to_argv() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("mineru-api");
        std::fs::write(&script, "#!/opt/venv/bin/python\nprint('hi')\n").unwrap();
        let args = vec![OsString::from("--port"), OsString::from("1")];
        let cmd = EngineCommand::new(&script, &args, Some("s3cret"))
            .unwrap()
            .under_guard(Path::new("/w/mineru-handler"));
        assert_eq!(cmd.stdin.as_deref(), Some(&b"s3cret\n"[..]));
        assert!(
            !cmd.argv
                .iter()
                .any(|a| a.to_string_lossy().contains("s3cret"))
        );
        assert_eq!(
            cmd.argv[..3],
            [
                OsString::from("/w/mineru-handler"),
                "/opt/venv/bin/python".into(),
                "-c".into()
            ]
        );
        assert_eq!(cmd.argv[4], script.as_os_str());
        assert_eq!(&cmd.argv[5..], &args[..]);
        // An interpreter and its script (the FAKE engine's form).
        let fake = vec![OsString::from("fake.py"), OsString::from("--port")];
        let cmd = EngineCommand::new(Path::new("python3"), &fake, Some("k")).unwrap();
        assert_eq!(cmd.argv[..2], [OsString::from("python3"), "-c".into()]);
        assert_eq!(cmd.argv[3], "fake.py");
        // No key: the server itself, nothing on stdin; a key for a non-Python program: none.
        let cmd = EngineCommand::new(Path::new("/bin/true"), &[], None).unwrap();
        assert_eq!(
            (cmd.argv, cmd.stdin),
            (vec![OsString::from("/bin/true")], None)
        );
        assert!(!can_pass_key(Path::new("/bin/true"), &[]));
    }
}
