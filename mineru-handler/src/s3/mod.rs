//! The `s3` transport (docs/job-contract.md §9.3, §11): the result archive goes to an S3-compatible
//! bucket and the job returns a presigned GET URL for it.
//!
//! [`S3Config`] is the `BUCKET_*` configuration, read once at boot; [`S3Uploader`] uploads an
//! archive file that [`crate::package::write_archive`] wrote into the job directory. Files up
//! to one part ([`S3Config::part_size`], 16 MiB) go up in one `PutObject`; larger ones with a
//! multipart upload, one part after another. Each request body streams from the file, so memory
//! stays at a few read buffers whatever the archive's size. A request that fails transiently
//! is sent again (up to three attempts in all): an upload is a job's result, and S3 asks clients
//! to retry `SlowDown` and `InternalError`.
//!
//! Signing is [`rusty_s3`]: a small, sans-IO SigV4 implementation that only builds presigned
//! URLs (`PutObject`, `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`,
//! `AbortMultipartUpload`, `GetObject`). The requests go out through reqwest, which the worker
//! already uses, and the HMAC comes from aws-lc-rs, which rustls already brings. The AWS SDK
//! would add its own HTTP stack, runtime glue and hundreds of crates to cover the six calls
//! made here.
//!
//! Presigned URLs carry credentials in their query string. None is logged, traced or put in
//! an error: messages name the object by `scheme://host/path` only, and reqwest's errors are
//! stripped of their URL.

mod config;
mod error;
mod upload;

pub use config::{MIN_PART_SIZE, REQUIRED_VARS, S3Config, S3ConfigError};
pub use error::S3Error;
pub use upload::{S3Uploader, Uploaded};
