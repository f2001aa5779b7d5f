//! The engine guard (docs/engine.md §4.2, issue 10): no engine process outlives a SIGKILLed
//! worker, grandchildren in other sessions included; the engine's key is on no command line;
//! the engine listens on loopback only.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::process_gone;

/// Every living descendant of `root`, from `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let table: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            (state != "Z").then_some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(table.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        at += 1;
    }
    found.split_off(1)
}

/// Waits (bounded) until every pid is gone; the survivors otherwise.
pub fn survivors(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| !process_gone(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A FAKE worker (a shell) runs the guard over a Python "engine" that starts one grandchild in
/// its process group and one in a session of its own; SIGKILL of the shell leaves nothing.
#[test]
fn a_killed_worker_leaves_no_engine_process_in_any_session() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let engine = format!(
        "import subprocess, time, os\n\
         a = subprocess.Popen(['sleep', '1000'])\n\
         b = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n\
         open({pids:?} + '.tmp', 'w').write(f'{{os.getpid()}} {{a.pid}} {{b.pid}}')\n\
         os.rename({pids:?} + '.tmp', {pids:?})\n\
         time.sleep(1000)\n",
        pids = pids.to_str().unwrap()
    );
    let mut worker = Command::new("sh")
        .args([
            "-c",
            r#"MINERU_ENGINE_GUARD_PARENT=$$ "$1" python3 -c "$2" & wait"#,
            "sh",
            env!("CARGO_BIN_EXE_mineru-handler"),
            &engine,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pids.exists() {
        assert!(Instant::now() < deadline, "the FAKE engine did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all = descendants(worker.id());
    let written: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        written.iter().all(|p| all.contains(p)),
        "{written:?} {all:?}"
    );
    all.extend(&written);
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(survivors(&all, Duration::from_secs(10)), Vec::<u32>::new());
}

/// The engine of a real worker: its processes, its key and its socket.
pub fn check_private_engine(worker_pid: u32) -> Vec<u32> {
    let engine = descendants(worker_pid);
    assert!(!engine.is_empty(), "no engine under the worker");
    let mut port = None;
    for pid in &engine {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            !args.iter().any(|a| a == "--api-key"),
            "the key is on a command line: {args:?}"
        );
        if let Some(at) = args.iter().position(|a| a == "--port") {
            port = args.get(at + 1).and_then(|p| p.parse::<u16>().ok());
        }
    }
    let port = port.expect("the engine's --port");
    // LISTEN sockets on the engine's port: 127.0.0.1 only (hex, little-endian address).
    let listening: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .chain(
            std::fs::read_to_string("/proc/net/tcp6")
                .unwrap_or_default()
                .lines(),
        )
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, p) = f.get(1)?.split_once(':')?;
            (u16::from_str_radix(p, 16).ok()? == port && f.get(3) == Some(&"0A"))
                .then(|| addr.to_owned())
        })
        .collect();
    assert_eq!(listening, vec!["0100007F".to_owned()], "port {port}");
    // The key is in force: a protected route refuses a caller without it.
    let answer = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import urllib.request, urllib.error\n\
                 try:\n    urllib.request.urlopen('http://127.0.0.1:{port}/v1/tasks', timeout=5)\n    print(200)\n\
                 except urllib.error.HTTPError as e:\n    print(e.code)\n"
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "401");
    engine
}
