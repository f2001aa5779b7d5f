//! The workspace-level tests, one binary (one link) with a module per area. Most drive the
//! runtime in-process through `runpod_handler::testing`; the rest run a worker binary as a
//! child process against the FAKE RunPod server (tests/support) where signals, exit codes, the
//! process's own log lines or the bytes on the wire are the point.

mod dynamic_concurrency;
mod echo;
mod examples_worker;
mod fanout;
mod fitness;
mod lb;
mod lifecycle;
mod local;
mod local_endpoint;
mod logs;
mod mineru_startup;
mod mineru_telemetry;
mod otel_lb;
mod otel_runtime;
mod results;
mod sdk2_parity;
mod sdk_parity;
mod seam;
mod startup;
mod stream;
mod tls;
