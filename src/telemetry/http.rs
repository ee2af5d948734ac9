//! The operator's HTTP endpoint (`--metrics ADDR`): `GET /metrics` (Prometheus text format),
//! `GET /health` (the process is up) and `GET /ready` (listeners bound and, on a main server,
//! every service has a live worker; `503` and the reason otherwise). Anything else is `404`,
//! a method other than GET or HEAD `405`.
//!
//! Bounded like everything a client can reach: at most [`MAX_CONNECTIONS`] connections at once
//! (more are closed at once), request heads of at most [`MAX_REQUEST_BYTES`] (hyper answers
//! `431` beyond), [`HEADER_TIMEOUT`] to send one, and [`CONNECTION_LIFETIME`] for a connection
//! in all. Request bodies are never read.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::telemetry::metrics::Metrics;
use crate::telemetry::Telemetry;

/// Most HTTP connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head (request line and headers).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Time a client has to send a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an HTTP connection is kept, keep-alive or not.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// What `/ready` and the gauges that are read rather than counted ask of the process.
pub trait Status: Send + Sync + 'static {
    /// `Ok` when the process is ready to serve; else why not.
    fn ready(&self) -> Result<(), String>;
    /// Brings read gauges (registry size, workers up) up to date before a scrape.
    fn refresh(&self, _metrics: &Metrics) {}
}

/// The running endpoint; dropping it (or [`Endpoint::stop`]) stops it and its connections.
#[derive(Debug)]
pub struct Endpoint {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// Binds `address` and serves the endpoint for `telemetry`, with `status` for `/ready`.
    pub async fn start(address: SocketAddr, telemetry: Arc<Telemetry>, status: Arc<dyn Status>) -> io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, telemetry, status));
        Ok(Endpoint { address, task })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>, status: Arc<dyn Status>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // Too many at once: closed by dropping the stream.
        };
        let (telemetry, status) = (telemetry.clone(), status.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &telemetry, status.as_ref());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(permit);
        });
    }
}

fn respond(request: &Request<Incoming>, telemetry: &Telemetry, status: &dyn Status) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            status.refresh(&telemetry.metrics);
            let mut response = text(StatusCode::OK, telemetry.metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/health" => text(StatusCode::OK, "ok\n".into()),
        "/ready" => match status.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /health or /ready\n".into()),
    }
}

fn text(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
