//! `file_b64` (docs/job-contract.md §6.1): strict base64, ASCII whitespace ignored, decoded in
//! chunks straight into the destination file so no second copy of the document is held in memory.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::AsyncWriteExt as _;

use super::config::FetchConfig;
use super::dest::create_dest;
use super::error::FetchError;

/// Encoded characters decoded per step: a multiple of 4, so only the final step may carry
/// padding.
const CHUNK_CHARS: usize = 64 * 1024;

/// The whitespace Python's `bytes.split()` removes; non-ASCII whitespace is not stripped (and
/// then fails decoding), as in the reference.
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

pub(super) async fn decode_to_file(
    data: &str,
    cfg: &FetchConfig,
    dest: &Path,
) -> Result<u64, FetchError> {
    let chars = data.chars().count();
    if chars > cfg.b64_max_encoded_chars {
        return Err(FetchError::B64EncodedTooLarge { chars });
    }
    let mut significant = data.bytes().filter(|&b| !is_ascii_ws(b)).peekable();
    if significant.peek().is_none() {
        return Err(FetchError::B64Empty);
    }
    let mut file = create_dest(dest).await?;
    let mut encoded = Vec::with_capacity(CHUNK_CHARS);
    let mut decoded = vec![0u8; CHUNK_CHARS / 4 * 3];
    let mut written: u64 = 0;
    let mut offset = 0usize;
    loop {
        encoded.clear();
        encoded.extend(significant.by_ref().take(CHUNK_CHARS));
        let last = significant.peek().is_none();
        if !last {
            // Padding may only end the data; a chunk that is not the last must not contain it.
            if let Some(pos) = encoded.iter().position(|&b| b == b'=') {
                return Err(FetchError::B64Invalid(format!(
                    "Invalid padding at offset {}",
                    offset + pos
                )));
            }
        }
        let n = STANDARD
            .decode_slice(&encoded, &mut decoded)
            .map_err(|e| FetchError::B64Invalid(shift_offsets(e, offset)))?;
        written += n as u64;
        file.write_all(&decoded[..n])
            .await
            .map_err(FetchError::Io)?;
        offset += encoded.len();
        if last {
            break;
        }
    }
    file.flush().await.map_err(FetchError::Io)?;
    if written > cfg.b64_max_decoded_bytes {
        return Err(FetchError::B64DecodedTooLarge { bytes: written });
    }
    Ok(written)
}

/// The decoder's message with its offsets made relative to the whole (whitespace-free) input.
fn shift_offsets(err: base64::DecodeSliceError, offset: usize) -> String {
    use base64::{DecodeError, DecodeSliceError};
    match err {
        DecodeSliceError::DecodeError(DecodeError::InvalidByte(at, byte)) => {
            DecodeError::InvalidByte(at + offset, byte).to_string()
        }
        DecodeSliceError::DecodeError(DecodeError::InvalidLastSymbol(at, byte)) => {
            DecodeError::InvalidLastSymbol(at + offset, byte).to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn decode(data: &str, cfg: &FetchConfig) -> (Result<u64, FetchError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let result = decode_to_file(data, cfg, &dir.path().join("doc")).await;
        (result, dir)
    }

    #[tokio::test]
    async fn wrapped_base64_decodes_to_the_exact_bytes() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = STANDARD.encode(&body);
        // Wrap at 76 with CRLF, plus tabs and spaces, as mail-style encoders do.
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n\t ", std::str::from_utf8(c).unwrap()))
            .collect();
        let (result, dir) = decode(&wrapped, &FetchConfig::default()).await;
        assert_eq!(result.unwrap(), body.len() as u64);
        assert_eq!(std::fs::read(dir.path().join("doc")).unwrap(), body);
    }

    #[tokio::test]
    async fn limits_and_errors_in_contract_order() {
        let cfg = FetchConfig::default();
        let msg = |r: Result<u64, FetchError>| r.unwrap_err().to_string();

        let (r, _d) = decode(" \r\n\t\u{b}\u{c}", &cfg).await;
        assert_eq!(
            msg(r),
            "file_b64 contains no base64 data (it is empty once whitespace is removed); send the encoded document body, or use file_url or volume_path"
        );
        for bad in ["QUJD*", "QUJ", "QQ=", "QUI=QUJD", "QUJD\u{a0}", "QR=="] {
            let (r, _d) = decode(bad, &cfg).await;
            let m = msg(r);
            assert!(
                m.starts_with("file_b64 is not valid base64 ("),
                "{bad:?}: {m}"
            );
            assert!(
                m.ends_with(
                    "); it must be the base64-encoded body of the document, and nothing else"
                ),
                "{m}"
            );
        }
        // Padding inside the data is refused even across chunk boundaries.
        let mid_pad = format!("{}QQ=={}", "A".repeat(CHUNK_CHARS - 4), "QUJD".repeat(4));
        let (r, _d) = decode(&mid_pad, &cfg).await;
        assert!(msg(r).contains("Invalid padding"));

        // Encoded length cap counts characters before whitespace is removed.
        let small = FetchConfig {
            b64_max_encoded_chars: 8,
            ..FetchConfig::default()
        };
        let (r, _d) = decode("QUJD QUJD", &small).await;
        assert_eq!(
            msg(r),
            "inline file too large (encoded length 9 chars); use file_url or volume_path for files > 20 MB"
        );

        // Decoded cap: one byte over is refused and the partial file removed by the fetcher.
        let cap = FetchConfig {
            b64_max_decoded_bytes: 1024 * 1024,
            ..FetchConfig::default()
        };
        let over = STANDARD.encode(vec![7u8; 1024 * 1024 + 1]);
        let (r, _d) = decode(&over, &cap).await;
        assert_eq!(
            msg(r),
            "inline file too large (1.0 MB); use file_url or volume_path for files > 20 MB"
        );
        let at = STANDARD.encode(vec![7u8; 1024 * 1024]);
        let (r, _d) = decode(&at, &cap).await;
        assert_eq!(r.unwrap(), 1024 * 1024);
    }
}
