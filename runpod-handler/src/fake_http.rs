//! A FAKE RunPod endpoint for unit tests (RunPod's servers cannot run here): answers every
//! request with a scripted reply on keep-alive connections — or with a connection fault (a
//! reset, a stall, a truncated body), or refuses connections for a while — and records each
//! request and when its answer (or fault) left. Its delays run on tokio's clock, so tests on
//! paused time script minutes of faults in milliseconds.
//!
//! On paused time, tokio advances the clock to the next timer whenever the runtime parks with
//! nothing to run, sockets included: a client left waiting on the kernel — an answer split in
//! two writes, its second segment held by Nagle's algorithm for the client's delayed ACK (40 ms)
//! — would see its 90 s timeout fire. So each answer leaves in one write on a `TCP_NODELAY`
//! socket: over loopback it is readable by the time the write returns.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One scripted answer: held for `delay`, then `status` with a `body` (if any: JSON unless
/// `content_type` says otherwise), or a fault.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) delay: Duration,
    pub(crate) status: u16,
    pub(crate) body: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) fault: Option<Fault>,
}

/// What goes wrong with a connection instead of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The connection is reset (RST) once the request has arrived.
    Reset,
    /// No answer ever comes; the connection stays open until the client gives up.
    Stall,
    /// The head promises the whole body; half of it comes, then the connection closes.
    Truncate,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            body: None,
            content_type: None,
            fault: None,
        }
    }

    pub(crate) fn json(body: &str) -> Self {
        Self {
            body: Some(body.to_owned()),
            ..Self::status(200)
        }
    }

    pub(crate) fn fault(fault: Fault) -> Self {
        Self {
            fault: Some(fault),
            ..Self::status(200)
        }
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request and what happened to it.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) path: String,
    /// Header names lower-cased, in wire order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) arrived: Instant,
    /// When the answer (or the fault) left.
    pub(crate) answered: Instant,
    /// The status answered, or `None` for a fault.
    pub(crate) status: Option<u16>,
    /// Which connection it came on, numbered from 0 in the order they were accepted.
    pub(crate) connection: usize,
}

/// A request as the responder sees it.
pub(crate) struct Request<'a> {
    pub(crate) path: &'a str,
}

/// A duration in seconds, rounded to 10 ms, for tests on paused time to compare.
pub(crate) fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100.0).round() / 100.0
}

type Responder = Box<dyn FnMut(&Request<'_>) -> Reply + Send>;

struct Shared {
    responder: Mutex<Responder>,
    log: Mutex<Vec<Exchange>>,
    answered: tokio::sync::Notify,
    /// Cancelled to drop every open connection (a cut); replaced when the cut ends.
    connections: Mutex<CancellationToken>,
    accepted: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
pub(crate) struct FakeEndpoint {
    pub(crate) url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accepting: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Exchange {
    /// A header's value.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

impl FakeEndpoint {
    /// Serves `replies` in order, then `otherwise` for ever.
    pub(crate) async fn start(replies: Vec<Reply>, otherwise: Reply) -> Self {
        let mut replies = VecDeque::from(replies);
        Self::serve(move |_| replies.pop_front().unwrap_or_else(|| otherwise.clone())).await
    }

    /// Answers each request with what `responder` says.
    pub(crate) async fn serve(
        responder: impl FnMut(&Request<'_>) -> Reply + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            responder: Mutex::new(Box::new(responder)),
            log: Mutex::new(Vec::new()),
            answered: tokio::sync::Notify::new(),
            connections: Mutex::new(CancellationToken::new()),
            accepted: std::sync::atomic::AtomicUsize::new(0),
        });
        let accepting = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Self {
            url: format!("http://{addr}/"),
            addr,
            shared,
            accepting: Arc::new(Mutex::new(Some(accepting))),
        }
    }

    /// A network cut: every open connection is dropped and new ones are refused for `length`,
    /// then served again (the port stays bound meanwhile, so nothing else can take it).
    pub(crate) async fn cut(&self, length: Duration) {
        let accepting = lock(&self.accepting).take();
        if let Some(accepting) = accepting {
            accepting.abort();
            let _ = accepting.await;
        }
        let dropped = std::mem::take(&mut *lock(&self.shared.connections));
        dropped.cancel();
        // Bound but not listening: a connection attempt is refused (RST).
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("the cut endpoint's port");
        let (shared, accepting) = (Arc::clone(&self.shared), Arc::clone(&self.accepting));
        *lock(&accepting) = Some(tokio::spawn(async move {
            tokio::time::sleep(length).await;
            let listener = socket.listen(128).expect("listen again");
            accept(listener, shared).await;
        }));
    }

    pub(crate) fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.shared.log).clone()
    }

    /// Waits until `n` requests have been answered (or met their fault).
    pub(crate) async fn answered(&self, n: usize) -> Vec<Exchange> {
        self.until(|exchanges| exchanges.len() >= n).await
    }

    /// Waits until `done` holds for the exchanges so far, checked after each one.
    pub(crate) async fn until(&self, done: impl Fn(&[Exchange]) -> bool) -> Vec<Exchange> {
        loop {
            let notified = self.shared.answered.notified();
            let exchanges = self.exchanges();
            if done(&exchanges) {
                return exchanges;
            }
            notified.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        // Each answer leaves in one write, at once (see the module's note on paused time).
        let _ = stream.set_nodelay(true);
        let dropped = lock(&shared.connections).clone();
        let shared = Arc::clone(&shared);
        let connection = shared
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            dropped
                .run_until_cancelled(serve(stream, connection, Arc::clone(&shared)))
                .await;
        });
    }
}

/// One request read off a connection.
struct Incoming {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Incoming> {
    let (mut length, mut path, mut line) = (0usize, None, String::new());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        if line == "\r\n" && path.is_some() {
            break;
        }
        if path.is_none() {
            path = line.split(' ').nth(1).map(str::to_owned);
        } else if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            headers.push((name, value));
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.ok()?;
    Some(Incoming {
        path: path.unwrap_or_default(),
        headers,
        body,
    })
}

async fn serve(stream: TcpStream, connection: usize, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = read_request(&mut read).await {
        let arrived = Instant::now();
        let reply = (lock(&shared.responder))(&Request {
            path: &request.path,
        });
        tokio::time::sleep(reply.delay).await;
        let status = reply.fault.is_none().then_some(reply.status);
        let record = |shared: &Shared| {
            lock(&shared.log).push(Exchange {
                path: request.path.clone(),
                headers: request.headers.clone(),
                body: request.body.clone(),
                arrived,
                answered: Instant::now(),
                status,
                connection,
            });
            shared.answered.notify_waiters();
        };
        let content_type = match (&reply.content_type, &reply.body) {
            (Some(content_type), _) => format!("Content-Type: {content_type}\r\n"),
            (None, Some(_)) => "Content-Type: application/json\r\n".to_owned(),
            (None, None) => String::new(),
        };
        let body = reply.body.unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} X\r\n{content_type}Content-Length: {}\r\n\r\n",
            reply.status,
            body.len()
        );
        match reply.fault {
            Some(Fault::Reset) => {
                record(&shared);
                if let Ok(stream) = read.into_inner().reunite(write) {
                    let _ = stream.set_zero_linger();
                }
                return;
            }
            Some(Fault::Stall) => {
                record(&shared);
                // Held until the client hangs up (or the endpoint is cut).
                let _ = read.read_u8().await;
                return;
            }
            Some(Fault::Truncate) => {
                let cut = head.len() + body.len() / 2;
                let _ = write
                    .write_all(&[head.as_bytes(), body.as_bytes()].concat()[..cut])
                    .await;
                record(&shared);
                return;
            }
            None => {}
        }
        if write
            .write_all(&[head.as_bytes(), body.as_bytes()].concat())
            .await
            .is_err()
        {
            return;
        }
        record(&shared);
    }
}
