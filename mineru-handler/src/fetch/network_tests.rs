//! Downloads against real HTTP servers on 127.0.0.1 started by each test.
//!
//! The routability policy stays **on** in these tests. To reach a first hop at all, the policy
//! exempts exactly one literal `ip:port`, the redirecting server (a test-only seam,
//! [`AddressPolicy::exempt_for_test`]); names are never exempt. Every "target" server counts
//! its requests, so a refused hop is proven not to have connected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use super::ssrf::AddressPolicy;
use super::*;
use crate::url_shape::UrlShapeError;

const PDF: &[u8] = b"%PDF-1.7\nthe target document\n";

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A server whose every request is counted; `/doc` answers the PDF.
async fn counted_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let router = Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { PDF }
    });
    (serve(router).await, hits)
}

fn redirect(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn fetcher(config: FetchConfig, exempt: &[SocketAddr]) -> Fetcher {
    let mut policy = AddressPolicy::new(config.allow_local_fetch);
    policy.exempt_for_test = exempt.to_vec();
    Fetcher::with_policy(config, policy).unwrap()
}

async fn fetch_url(
    f: &Fetcher,
    url: &str,
) -> (Result<FetchedInput, FetchError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("input");
    let result = f.fetch(&InputSource::Url(url.to_owned()), &dest).await;
    if result.is_err() {
        assert!(!dest.exists(), "a failed fetch leaves no file behind");
    }
    (result, dir)
}

fn refused(host: &str) -> String {
    format!(
        "file_url must point at a publicly routable host; '{host}' is not one (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)"
    )
}

fn legacy(host: &str) -> String {
    format!(
        "file_url host '{host}' is a legacy numeric address spelling; write it in dotted-quad form so it means the same thing to this worker as it does to whatever resolves it"
    )
}

#[tokio::test]
async fn every_redirect_hop_is_rechecked() {
    let (target, target_hits) = counted_target().await;
    let port = target.port();
    let hop = Router::new()
        .route("/doc", get(|| async { PDF }))
        .route(
            "/to-self",
            get(|| async { redirect("/doc?sig=1".to_owned()) }),
        )
        .route(
            "/to-literal",
            get(move || async move { redirect(format!("http://127.0.0.1:{port}/doc")) }),
        )
        .route(
            "/to-localhost",
            get(move || async move { redirect(format!("http://localhost:{port}/doc")) }),
        )
        .route(
            "/to-mapped",
            get(move || async move { redirect(format!("http://[::ffff:127.0.0.1]:{port}/doc")) }),
        )
        .route(
            "/to-ipv6-loopback",
            get(move || async move { redirect(format!("http://[::1]:{port}/doc")) }),
        )
        .route(
            "/to-legacy",
            get(move || async move { redirect(format!("http://0x7f.1:{port}/doc")) }),
        )
        .route(
            "/to-decimal",
            get(move || async move { redirect(format!("http://2130706433:{port}/doc")) }),
        )
        .route(
            "/to-pct",
            get(move || async move { redirect(format!("http://127%2E0%2E0%2E1:{port}/doc")) }),
        )
        .route(
            "/to-metadata",
            get(|| async { redirect("http://169.254.169.254/latest/meta-data/".to_owned()) }),
        )
        .route(
            "/to-ftp",
            get(|| async { redirect("ftp://example.com/doc".to_owned()) }),
        );
    let first = serve(hop).await;
    let f = fetcher(FetchConfig::default(), &[first]);

    // Control: the exempt first hop itself, reached through a relative redirect, works.
    let (ok, dir) = fetch_url(
        &f,
        &format!("http://{first}/to-self?X-Amz-Signature=SECRET"),
    )
    .await;
    let ok = ok.unwrap();
    assert_eq!(ok.bytes, PDF.len() as u64);
    assert_eq!(ok.source_label, format!("url:http://{first}/to-self"));
    assert_eq!(std::fs::read(dir.path().join("input")).unwrap(), PDF);

    let cases: Vec<(&str, String)> = vec![
        ("/to-literal", refused("127.0.0.1")),
        ("/to-mapped", refused("::ffff:127.0.0.1")),
        ("/to-ipv6-loopback", refused("::1")),
        ("/to-pct", refused("127%2e0%2e0%2e1")),
        ("/to-metadata", refused("169.254.169.254")),
        ("/to-legacy", legacy("0x7f.1")),
        ("/to-decimal", legacy("2130706433")),
        (
            "/to-ftp",
            "file_url must be an http(s) URL; got scheme 'ftp'".to_owned(),
        ),
    ];
    for (path, expected) in cases {
        let (err, _dir) = fetch_url(&f, &format!("http://{first}{path}")).await;
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), expected, "{path}");
        assert_eq!(err.error_type(), "ValueError");
    }
    // A name: the resolver refuses the whole answer set (127.0.0.1 and/or ::1).
    let (err, _dir) = fetch_url(&f, &format!("http://{first}/to-localhost")).await;
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "file_url must point at a publicly routable host; 'localhost' resolves to "
        ),
        "{msg}"
    );
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "no refused hop reached the target"
    );
}

#[tokio::test]
async fn private_first_hops_are_refused_before_connecting() {
    let (target, hits) = counted_target().await;
    let port = target.port();
    let f = fetcher(FetchConfig::default(), &[]);
    let literal_cases = [
        (format!("http://127.0.0.1:{port}/doc"), refused("127.0.0.1")),
        (format!("http://[::1]:{port}/doc"), refused("::1")),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/doc"),
            refused("::ffff:127.0.0.1"),
        ),
        (
            format!("http://[::ffff:7f00:1]:{port}/doc"),
            refused("::ffff:7f00:1"),
        ),
        (format!("http://0.0.0.0:{port}/doc"), refused("0.0.0.0")),
        ("http://[fe80::1]/doc".to_owned(), refused("fe80::1")),
        ("http://[fc00::1]/doc".to_owned(), refused("fc00::1")),
        (
            "http://[64:ff9b::a9fe:a9fe]/doc".to_owned(),
            refused("64:ff9b::a9fe:a9fe"),
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            refused("169.254.169.254"),
        ),
        ("http://10.0.0.1/doc".to_owned(), refused("10.0.0.1")),
        ("http://192.168.0.1/doc".to_owned(), refused("192.168.0.1")),
        ("http://100.64.0.1/doc".to_owned(), refused("100.64.0.1")),
        (
            "http://255.255.255.255/doc".to_owned(),
            refused("255.255.255.255"),
        ),
        ("http://224.0.0.251/doc".to_owned(), refused("224.0.0.251")),
        ("http://198.18.0.1/doc".to_owned(), refused("198.18.0.1")),
        ("http://203.0.113.5/doc".to_owned(), refused("203.0.113.5")),
    ];
    for (url, expected) in literal_cases {
        let (err, _dir) = fetch_url(&f, &url).await;
        assert_eq!(err.unwrap_err().to_string(), expected, "{url}");
    }
    for host in [
        "127.1",
        "0x7f.1",
        "017700000001",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
    ] {
        let (err, _dir) = fetch_url(&f, &format!("http://{host}:{port}/doc")).await;
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("file_url host '{host}' is a legacy numeric")),
            "{msg}"
        );
    }
    for host in ["localhost", "LOCALHOST"] {
        let (err, _dir) = fetch_url(&f, &format!("http://{host}:{port}/doc")).await;
        let msg = err.unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "file_url must point at a publicly routable host; '{}' resolves to ",
                host.to_lowercase()
            )),
            "{msg}"
        );
    }
    // The metadata name either does not resolve here or resolves to a link-local address:
    // both are refusals, never a request.
    let (err, _dir) = fetch_url(&f, "http://metadata.google.internal/computeMetadata/v1/").await;
    let err = err.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Unresolvable { .. } | FetchError::ResolvesToNonRoutable { .. }
        ),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn opt_out_allows_local_targets() {
    let (target, hits) = counted_target().await;
    let f = fetcher(
        FetchConfig {
            allow_local_fetch: true,
            ..FetchConfig::default()
        },
        &[],
    );
    for url in [
        format!("http://{target}/doc"),
        format!("http://localhost:{}/doc", target.port()),
    ] {
        let (ok, _dir) = fetch_url(&f, &url).await;
        assert_eq!(ok.unwrap().bytes, PDF.len() as u64, "{url}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // The opt-out never admits legacy spellings.
    let (err, _dir) = fetch_url(&f, &format!("http://127.1:{}/doc", target.port())).await;
    assert!(matches!(
        err.unwrap_err(),
        FetchError::Shape(UrlShapeError::LegacyNumericHost { .. })
    ));
}

fn big_body(len: usize, with_length: bool) -> Response {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = len.div_ceil(chunk.len());
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let mut headers = HeaderMap::new();
    if with_length {
        headers.insert(header::CONTENT_LENGTH, (chunks * 64 * 1024).into());
    }
    (headers, Body::from_stream(stream)).into_response()
}

#[tokio::test]
async fn size_cap_applies_to_declared_and_streamed_bodies() {
    const CAP: u64 = 1024 * 1024;
    let router = Router::new()
        .route(
            "/declared",
            get(|| async { big_body(2 * 1024 * 1024, true) }),
        )
        .route(
            "/chunked",
            get(|| async { big_body(2 * 1024 * 1024, false) }),
        )
        .route("/at-cap", get(|| async { big_body(1024 * 1024, false) }));
    let server = serve(router).await;
    let f = fetcher(
        FetchConfig {
            url_max_bytes: CAP,
            ..FetchConfig::default()
        },
        &[server],
    );

    let (err, _dir) = fetch_url(&f, &format!("http://{server}/declared")).await;
    assert_eq!(
        err.unwrap_err().to_string(),
        "file_url body too large (2.0 MB); max is 1 MB"
    );
    let (err, _dir) = fetch_url(&f, &format!("http://{server}/chunked")).await;
    assert_eq!(
        err.unwrap_err().to_string(),
        "file_url body exceeded 1 MB while streaming"
    );
    let (ok, _dir) = fetch_url(&f, &format!("http://{server}/at-cap")).await;
    assert_eq!(ok.unwrap().bytes, CAP);
}

#[tokio::test]
async fn status_errors_and_redirect_loops_never_show_secrets() {
    let router = Router::new()
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/broken", get(|| async { StatusCode::BAD_GATEWAY }))
        .route(
            "/loop",
            get(|| async { redirect("/loop?again=1".to_owned()) }),
        );
    let server = serve(router).await;
    let f = fetcher(
        FetchConfig {
            url_max_redirects: 3,
            ..FetchConfig::default()
        },
        &[server],
    );

    let (err, _dir) = fetch_url(
        &f,
        &format!("http://user:pw@{server}/missing?X-Amz-Signature=SECRET"),
    )
    .await;
    let err = err.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Client error '404 Not Found' for url 'http://{server}/missing'")
    );
    assert_eq!(err.error_type(), "HTTPStatusError");
    let (err, _dir) = fetch_url(&f, &format!("http://{server}/broken?token=SECRET")).await;
    assert_eq!(
        err.unwrap_err().to_string(),
        format!("Server error '502 Bad Gateway' for url 'http://{server}/broken'")
    );
    let (err, _dir) = fetch_url(&f, &format!("http://{server}/loop")).await;
    assert!(matches!(err.unwrap_err(), FetchError::TooManyRedirects));

    // A refused connection reports the cause without the URL or its query.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let f = fetcher(FetchConfig::default(), &[closed]);
    let (err, _dir) = fetch_url(&f, &format!("http://{closed}/x?sig=SECRET")).await;
    let err = err.unwrap_err();
    assert_eq!(err.error_type(), "ConnectError");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

/// Headers and one chunk, then silence that never ends.
fn stalled() -> Response {
    let first = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"%PDF-1.7\n"))
    });
    Body::from_stream(futures_util::StreamExt::chain(
        first,
        futures_util::stream::pending(),
    ))
    .into_response()
}

#[tokio::test]
async fn inactivity_and_total_budgets_end_stalled_downloads() {
    let server = serve(Router::new().route("/stall", get(|| async { stalled() }))).await;
    let url = format!("http://{server}/stall");

    let idle = FetchConfig {
        url_inactivity_timeout: Duration::from_millis(200),
        ..FetchConfig::default()
    };
    let (err, _dir) = fetch_url(&fetcher(idle, &[server]), &url).await;
    assert_eq!(err.unwrap_err().error_type(), "ReadTimeout");

    let budget = FetchConfig {
        url_total_budget: Duration::from_millis(300),
        ..FetchConfig::default()
    };
    let (err, _dir) = fetch_url(&fetcher(budget, &[server]), &url).await;
    let msg = err.unwrap_err().to_string();
    assert!(
        msg.starts_with("file_url download exceeded the 0s budget after 0.0 MB"),
        "{msg}"
    );
}
