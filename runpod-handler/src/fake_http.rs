//! A FAKE RunPod endpoint for unit tests (RunPod's servers cannot run here): answers every
//! request with the next scripted reply, on keep-alive connections, and records when each
//! request arrived and when its answer left.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// One scripted answer: held for `delay`, then `status` with a JSON `body` (if any).
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) delay: Duration,
    pub(crate) status: u16,
    pub(crate) body: Option<String>,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            body: None,
        }
    }

    pub(crate) fn json(body: &str) -> Self {
        Self {
            delay: Duration::ZERO,
            status: 200,
            body: Some(body.to_owned()),
        }
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    pub(crate) arrived: Instant,
    pub(crate) answered: Instant,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    /// Answered once the script is used up.
    otherwise: Option<Reply>,
    log: Vec<Exchange>,
}

#[derive(Clone)]
pub(crate) struct FakeEndpoint {
    pub(crate) url: String,
    script: Arc<Mutex<Script>>,
    answered: Arc<tokio::sync::Notify>,
}

impl FakeEndpoint {
    /// Serves `replies` in order, then `otherwise` for ever.
    pub(crate) async fn start(replies: Vec<Reply>, otherwise: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            otherwise: Some(otherwise),
            log: Vec::new(),
        }));
        let answered = Arc::new(tokio::sync::Notify::new());
        let (shared, notify) = (Arc::clone(&script), Arc::clone(&answered));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared), Arc::clone(&notify)));
            }
        });
        Self {
            url,
            script,
            answered,
        }
    }

    pub(crate) fn exchanges(&self) -> Vec<Exchange> {
        self.script.lock().expect("script").log.clone()
    }

    /// Waits until `n` requests have been answered.
    pub(crate) async fn answered(&self, n: usize) -> Vec<Exchange> {
        loop {
            let notified = self.answered.notified();
            let exchanges = self.exchanges();
            if exchanges.len() >= n {
                return exchanges;
            }
            notified.await;
        }
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Arc<Mutex<Script>>,
    answered: Arc<tokio::sync::Notify>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut any = false;
        loop {
            line.clear();
            match read.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" && any {
                break;
            }
            any = true;
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if read.read_exact(&mut body).await.is_err() {
            return;
        }
        let arrived = Instant::now();
        let reply = {
            let mut script = script.lock().expect("script");
            let next = script.replies.pop_front();
            next.or_else(|| script.otherwise.clone())
        };
        let Some(reply) = reply else { return };
        tokio::time::sleep(reply.delay).await;
        let body = reply.body.unwrap_or_default();
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        let head = format!(
            "HTTP/1.1 {} X\r\n{content_type}Content-Length: {}\r\n\r\n",
            reply.status,
            body.len()
        );
        let sent = Instant::now();
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
        script.lock().expect("script").log.push(Exchange {
            arrived,
            answered: sent,
        });
        answered.notify_waiters();
    }
}
