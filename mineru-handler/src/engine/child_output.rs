//! The child's stdout and stderr as log events (target and logger `mineru-api`), line by line,
//! never letting a pipe fill up: errors as warnings, start-up chatter as info, the rest debug.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Forwarded child output lines are cut to this many bytes.
const MAX_LINE: usize = 4096;

/// Forwards the child's output as log events, line by line, never letting the pipe fill up.
pub(crate) async fn forward_lines(stream: impl AsyncRead + Unpin, starting: Arc<AtomicBool>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n')
            && line.len() == MAX_LINE
            && !skip_rest_of_line(&mut reader).await
        {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        if looks_like_error(text) {
            tracing::warn!(target: "mineru-api", logger = "mineru-api", "{text}");
        } else if starting.load(Ordering::Relaxed) {
            tracing::info!(target: "mineru-api", logger = "mineru-api", "{text}");
        } else {
            tracing::debug!(target: "mineru-api", logger = "mineru-api", "{text}");
        }
    }
}

/// Discards the remainder of an over-long line; false at end of stream.
async fn skip_rest_of_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> bool {
    let mut sink = Vec::with_capacity(MAX_LINE);
    loop {
        sink.clear();
        match reader
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut sink)
            .await
        {
            Ok(0) | Err(_) => return false,
            Ok(_) if sink.last() == Some(&b'\n') => return true,
            Ok(_) => {}
        }
    }
}

fn looks_like_error(line: &str) -> bool {
    ["ERROR", "CRITICAL", "Traceback", "Error:", "Exception"]
        .iter()
        .any(|marker| line.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_stream_keeps_flowing() {
        let mut input = vec![b'x'; MAX_LINE * 3];
        input.extend_from_slice(b"\nsecond\n");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .unwrap();
        assert_eq!(line.len(), MAX_LINE);
        assert!(skip_rest_of_line(&mut reader).await);
        line.clear();
        reader.read_until(b'\n', &mut line).await.unwrap();
        assert_eq!(line, b"second\n");
    }
}
