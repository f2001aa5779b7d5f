//! Support code for the workspace-level tests and benchmarks: fakes of what cannot run here.
