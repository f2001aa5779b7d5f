//! The SDK's command-line flags (docs/protocol.md §15.1), parsed leniently: the application may
//! have flags of its own, so anything unrecognised is ignored.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(no_binary_name = true, disable_help_flag = true)]
pub(crate) struct Args {
    #[arg(long = "rp_log_level")]
    pub(crate) rp_log_level: Option<String>,
    #[arg(long = "rp_serve_api")]
    pub(crate) rp_serve_api: bool,
    #[arg(long = "rp_api_port", default_value_t = 8000)]
    pub(crate) rp_api_port: u16,
    #[arg(long = "rp_api_host", default_value = "localhost")]
    pub(crate) rp_api_host: String,
    #[arg(long = "rp_api_concurrency", default_value_t = 1)]
    pub(crate) rp_api_concurrency: usize,
    #[arg(long = "test_input")]
    pub(crate) test_input: Option<String>,
}

/// Our flags as given, and what is wrong with them.
#[derive(Debug)]
pub(crate) struct BadFlags {
    pub(crate) given: String,
    pub(crate) reason: &'static str,
}

const SWITCHES: &[&str] = &["--rp_serve_api"];
const WITH_VALUE: &[&str] = &[
    "--rp_log_level",
    "--rp_api_port",
    "--rp_api_host",
    "--rp_api_concurrency",
    "--test_input",
];

impl Args {
    /// Keeps only our flags (and their values), then lets clap type them.
    pub(crate) fn parse_lenient(args: impl Iterator<Item = String>) -> Result<Self, BadFlags> {
        let mut ours = Vec::new();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let name = arg.split('=').next().unwrap_or_default();
            if SWITCHES.contains(&name) {
                ours.push(arg);
            } else if WITH_VALUE.contains(&name) {
                let has_inline_value = arg.contains('=');
                ours.push(arg);
                if !has_inline_value && let Some(value) = args.next() {
                    ours.push(value);
                }
            }
        }
        Args::try_parse_from(&ours).map_err(|err| BadFlags {
            given: ours.join(" "),
            reason: clap_reason(&err),
        })
    }
}

fn clap_reason(err: &clap::Error) -> &'static str {
    match err.kind() {
        clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue => {
            "a flag's value has the wrong type"
        }
        _ => "a flag is missing its value or repeated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::parse_lenient(args.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn unknown_flags_are_ignored_and_values_kept() {
        let a = parse(&[
            "--model",
            "x",
            "--test_input",
            r#"{"input": 1}"#,
            "--verbose",
        ]);
        assert_eq!(a.test_input.as_deref(), Some(r#"{"input": 1}"#));
        let a = parse(&[
            "--rp_serve_api",
            "--rp_api_port=9000",
            "--rp_api_host",
            "0.0.0.0",
        ]);
        assert!(a.rp_serve_api);
        assert_eq!((a.rp_api_port, a.rp_api_host.as_str()), (9000, "0.0.0.0"));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(
            Args::parse_lenient(["--rp_api_port".to_string(), "x".into()].into_iter()).is_err()
        );
    }
}
