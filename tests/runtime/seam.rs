//! In-process worker mode: a [`Runtime`](runpod_handler::Runtime) configured, as the platform
//! would configure it, for the FAKE RunPod server, run with `Runtime::run` inside the test (no
//! child process), for behaviour that needs the real wire but neither a signal nor an exit code.

use runpod_handler::Config;
use test_support::FakeRunpod;

/// The configuration a worker on the platform reads, pointed at `server`, plus `extra`.
pub fn config(server: &FakeRunpod, extra: &[(&str, &str)]) -> Config {
    let mut env = server.worker_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lookup = |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    match Config::from_parts(lookup, std::iter::empty::<String>()) {
        Ok(config) => config,
        Err(err) => panic!("the FAKE server's environment is a valid configuration: {err}"),
    }
}
