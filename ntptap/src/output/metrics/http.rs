//! The metrics' HTTP endpoint (`--metrics`): hyper's HTTP/1.1 server on a thread and runtime
//! of its own, so that no client, however slow or many, takes time from the capture.
//!
//! What bounds it (each a constant here, in the README's metrics section and RELIABILITY.md):
//! at most [`MAX_CONNECTIONS`] connections at once (the rest wait in the kernel's backlog, and
//! hold none of ntptap's file descriptors); a request's head must arrive within
//! [`HEADER_DEADLINE`] and be at most [`MAX_HEAD`] bytes; a connection lives at most
//! [`CONNECTION_DEADLINE`], answer included (a client that does not read is cut off). The page
//! is rendered once per second by the metrics sink and shared by every client (a reference
//! count, not a copy). `GET`/`HEAD` of `/metrics` (or `/`) get the page; `POST
//! /flight-recorder` asks the flight recorder for a dump, from loopback or with the bearer token
//! of `--metrics-token FILE`; another path is a 404, another method a 405.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::warn;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest a request's head may take to arrive.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(2);
/// Longest a connection may last, the answer's writing included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
/// Largest request head read (hyper's smallest buffer).
pub const MAX_HEAD: usize = 8192;

/// The page the metrics sink renders and the server serves: one copy, shared.
pub type Exposition = Arc<Mutex<Bytes>>;

/// The endpoint: bound when the outputs are built (so a port in use fails before anything is
/// attached), served once the capture runs.
pub struct Endpoint {
    listener: std::net::TcpListener,
    exposition: Exposition,
    /// Where a POST to `/flight-recorder` goes, with `--flight-recorder`.
    pub flight: Option<super::super::flight::Requests>,
    /// `--metrics-token`: what a POST from another host must carry (`Authorization: Bearer`).
    pub token: Option<String>,
}

impl Endpoint {
    /// Listen on `addr`.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "cannot serve metrics on {addr}: is the port in use? choose another with --metrics"
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("cannot make the metrics listener non-blocking")?;
        Ok(Self {
            listener,
            exposition: Exposition::default(),
            flight: None,
            token: None,
        })
    }

    /// What the server serves; the metrics sink renders into it.
    #[must_use]
    pub fn exposition(&self) -> Exposition {
        Arc::clone(&self.exposition)
    }

    /// Serve on a thread of its own until the process ends.
    pub fn serve(self) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the metrics server's runtime")?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(self.listener)
                .context("cannot serve metrics from its runtime")?
        };
        let shared = Arc::new(Shared {
            exposition: self.exposition,
            flight: self.flight,
            token: self.token,
        });
        std::thread::Builder::new()
            .name("ntptap-http".into())
            .spawn(move || runtime.block_on(serve(listener, shared)))
            .context("cannot start the metrics server's thread")?;
        Ok(())
    }
}

struct Shared {
    exposition: Exposition,
    flight: Option<super::super::flight::Requests>,
    token: Option<String>,
}

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut failures = 0u64;
    loop {
        // A place first, then the connection: past the cap, clients wait in the backlog.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: say so now and then, wait,
                // and go on; the capture is not this thread's to stop.
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(
                        "the metrics endpoint cannot accept a connection ({e}); {failures} so far"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(answer(&shared, &request, peer).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // Dropping the connection closes it, whatever it was waiting for.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
        });
    }
}

/// The answer to one request.
async fn answer(
    shared: &Shared,
    request: &Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    match (path, request.method()) {
        ("/metrics" | "/", &Method::GET | &Method::HEAD) => {
            let page = shared
                .exposition
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            let mut response = Response::new(Full::new(if request.method() == Method::HEAD {
                Bytes::new()
            } else {
                page
            }));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        ("/flight-recorder", &Method::POST) => {
            if !allowed(shared.token.as_deref(), request, peer) {
                return text(
                    StatusCode::FORBIDDEN,
                    "a dump is asked from loopback, or with the token of --metrics-token \
                     (Authorization: Bearer TOKEN)",
                );
            }
            let (status, body) = flight_request(shared.flight.as_ref()).await;
            text(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &body,
            )
        }
        ("/metrics" | "/" | "/flight-recorder", _) => {
            let allow = if path == "/flight-recorder" {
                "POST"
            } else {
                "GET, HEAD"
            };
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics",
        ),
    }
}

/// Whether a POST may ask for a dump: from loopback, or with the token.
fn allowed(token: Option<&str>, request: &Request<Incoming>, peer: SocketAddr) -> bool {
    // An IPv4 peer of a dual-stack socket comes as ::ffff:127.0.0.1.
    if peer.ip().to_canonical().is_loopback() {
        return true;
    }
    let Some(token) = token else { return false };
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given.trim().as_bytes(), token.as_bytes()))
}

/// Compare in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A POST to `/flight-recorder`: the recorder's answer (it looks within about a second).
async fn flight_request(flight: Option<&super::super::flight::Requests>) -> (u16, String) {
    let Some(requests) = flight else {
        return (
            404,
            "no flight recorder: start ntptap with --flight-recorder SIZE|DURATION".to_owned(),
        );
    };
    match tokio::time::timeout(Duration::from_secs(5), requests.ask()).await {
        Ok(Ok(answer)) => answer,
        _ => (
            503,
            "the flight recorder did not answer within 5 s".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
