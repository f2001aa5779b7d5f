//! Helpers the tests share: engine configurations (real MinerU, MinerU 3.4, the FAKE
//! mineru-api), fixtures, archive readers, and the real S3 server ([`moto`]).

pub mod moto;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mineru_handler::engine::{
    Engine, EngineConfig, EngineState, EngineStatus, PageSelection, ParseOptions, ParseOutput,
    ParseRequest, Tier,
};
use mineru_handler::package::{self, PackageRequest, Packaged, Payload};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One engine call's parts, owned: [`Call::request`] borrows them as the engine takes them.
pub struct Call {
    pub path: PathBuf,
    pub pages: PageSelection,
    pub options: ParseOptions,
}

impl Call {
    pub fn request(&self) -> ParseRequest<'_> {
        ParseRequest {
            path: &self.path,
            pages: self.pages,
            options: &self.options,
        }
    }
}

/// The FAKE mineru-api (tests/fakes/fake_mineru_api.py): for GPU tiers, crashes, hangs and
/// preload failures, which real MinerU cannot produce on this machine.
pub fn fake_engine_config(server_tier: Tier, env: &[(&str, &str)]) -> EngineConfig {
    let mut config = EngineConfig::from_lookup(|_| None).unwrap();
    config.program = "python3".into();
    config.program_args = vec![
        workspace_root()
            .join("tests/fakes/fake_mineru_api.py")
            .into_os_string(),
    ];
    config.server_tier = server_tier;
    config.preload_models = false;
    config.startup_timeout = Duration::from_secs(30);
    config.log_level = "info".into();
    config
        .child_env
        .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    config
}

/// The MinerU 4.0.12 environment: `MINERU_VENV`, else `<workspace>/.venv/mineru`. Panics with
/// a clear message when it is missing: these tests must never pass without real MinerU.
pub fn mineru_venv() -> PathBuf {
    let venv = std::env::var_os("MINERU_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/mineru"));
    assert!(
        venv.join("bin/mineru-api").is_file(),
        "real MinerU is required: {}/bin/mineru-api not found. Run scripts/setup-python.sh \
         (or set MINERU_VENV to an environment with mineru==4.0.12).",
        venv.display()
    );
    venv
}

/// A real `mineru-api --tier flash` engine, offline.
pub fn real_engine_config() -> EngineConfig {
    let venv = mineru_venv();
    let mut config = EngineConfig::from_lookup(|name| match name {
        "MINERU_SERVER_TIER" => Some("flash".into()),
        _ => None,
    })
    .unwrap();
    config.program = venv.join("bin/mineru-api");
    config.startup_timeout = Duration::from_secs(120);
    config
}

/// The MinerU 3.4.5 environment: `MINERU3_VENV`, else `<workspace>/.venv/mineru3`.
pub fn mineru3_venv() -> PathBuf {
    let venv = std::env::var_os("MINERU3_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/mineru3"));
    assert!(
        venv.join("bin/mineru-api").is_file(),
        "real MinerU 3.4 is required: {}/bin/mineru-api not found. Run scripts/setup-python.sh \
         (or set MINERU3_VENV to an environment with mineru==3.4.5).",
        venv.display()
    );
    venv
}

/// The FAKE OpenAI-compatible VLM server, killed when dropped.
pub struct FakeVlm {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl FakeVlm {
    pub fn start() -> Self {
        let mut child = std::process::Command::new("python3")
            .arg(workspace_root().join("tests/fakes/fake_openai_vlm.py"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The fake prints its port once it is listening.
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("listening on ").unwrap();
        FakeVlm {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }
}

impl Drop for FakeVlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates the real-engine fixtures with the MinerU environment's Python.
pub fn make_fixtures(dir: &Path) {
    let status = std::process::Command::new(mineru_venv().join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make_fixtures.py"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "fixture generation failed: {status}");
}

/// Bounded polling for a state change that happens in the background (a restart).
pub async fn wait_for_state(engine: &Engine, wanted: EngineState, restarts: u64) -> EngineStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = engine.status();
        if status.state == wanted && status.restarts >= restarts {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "engine never reached {wanted:?} with {restarts} restarts: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a process is gone (or a zombie waiting for its reaper).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Reads one member of a zip file.
pub fn zip_member(zip: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut file = archive.by_name(name).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    Some(bytes)
}

pub fn zip_names(zip: &Path) -> Vec<String> {
    let archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    archive.file_names().map(str::to_owned).collect()
}

/// The members (name, contents) of a base64-encoded tar.gz, in archive order.
pub fn tar_gz_members(b64: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    use std::io::Read as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// The member names of a base64-encoded tar.gz, in archive order.
pub fn tar_gz_names(b64: &str) -> Vec<String> {
    tar_gz_members(b64)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Packages a parse result as the worker would, basename `report`, with a fixed mtime.
pub fn package_report(output: &ParseOutput, payload: Payload) -> Packaged {
    package::package(&PackageRequest {
        result_zip: &output.result_zip,
        work_dir: output.dir(),
        basename: "report",
        payload,
        mtime: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        max_response_bytes: package::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap()
}
