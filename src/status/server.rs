//! The HTTP server of `--httpStatusPort`, on axum and hyper.
//!
//! - `GET /`: mongomirror's status JSON ([`super::Status::json`]).
//! - `GET /metrics`: OpenMetrics text ([`super::metrics`]).
//! - `POST /cutover`: a guided cutover ([`crate::cutover`]); the reply is the verification
//!   report (200), or why the cutover was refused or abandoned (409), or a bad request (400).
//!
//! Every connection is served by its own task and only reads the shared status, so no request
//! can stall the sync. A request head must arrive within [`HEADER_TIMEOUT`] and a body within
//! [`BODY_TIMEOUT`], and a body is at most [`MAX_BODY`] bytes. The server binds 127.0.0.1 unless
//! `--httpStatusHost` says otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Status;
use crate::cutover::{self, Control, Outcome};
use crate::error::{Failure, Result};

/// The longest wait for a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body taken.
pub const MAX_BODY: usize = 16 * 1024;
/// How long a stopping server waits for the replies in flight (a cutover's report).
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Shared {
    status: Arc<Status>,
    cutover: Arc<Control>,
}

/// A running status server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    drained: mpsc::Receiver<()>,
}

impl Server {
    /// Stops accepting connections and waits (a while) for the replies in flight, so that a
    /// cutover's report reaches its requester before the process exits.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(DRAIN, self.drained.recv()).await;
    }
}

/// Binds the status server and serves it in the background.
pub async fn serve(
    host: &str,
    port: u16,
    status: Arc<Status>,
    cutover: Arc<Control>,
) -> Result<Server> {
    let listener = TcpListener::bind((host, port)).await.map_err(|e| {
        Failure::usage(format!("cannot serve status on {host}:{port}"))
            .cause(e)
            .hint("pick a free --httpStatusPort (0 picks one), or a local --httpStatusHost")
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::runtime("status server").cause(e))?;
    info!(
        "status server listening on http://{addr}/ (metrics at /metrics, cutover at POST /cutover)"
    );
    let app = Router::new()
        .route("/", get(status_json))
        .route("/metrics", get(metrics))
        .route("/cutover", post(cutover_request))
        .fallback(not_found)
        .with_state(Shared { status, cutover });
    let (stop, mut stopped) = oneshot::channel();
    // Every connection task holds a sender; `drained` yields None once all are gone.
    let (open, drained) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut stopped => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("status server: cannot accept a connection ({e}); it keeps listening");
                    continue;
                }
            };
            let (service, open) = (TowerToHyperService::new(app.clone()), open.clone());
            tokio::spawn(async move {
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!("status server connection: {e}");
                }
                drop(open);
            });
        }
    });
    Ok(Server {
        addr,
        stop,
        drained,
    })
}

async fn status_json(State(shared): State<Shared>) -> Response {
    axum::Json(shared.status.json()).into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        shared.status.metrics(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not found: GET / (status), GET /metrics, POST /cutover",
    )
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({ "error": message }))).into_response()
}

/// `POST /cutover`: waits for the cutover's outcome and answers with it.
async fn cutover_request(State(shared): State<Shared>, request: Request) -> Response {
    let body = request.into_body();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await;
    let bytes = match read {
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "the request body was too slow"),
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {MAX_BODY} bytes"),
            )
        }
        Ok(Ok(bytes)) => bytes,
    };
    let parsed: std::result::Result<cutover::Body, _> = if bytes.iter().all(u8::is_ascii_whitespace)
    {
        Ok(cutover::Body::default())
    } else {
        serde_json::from_slice(&bytes)
    };
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body must be JSON like {{\"quietSeconds\": 5, \"verify\": true, \"timeoutSeconds\": 300}}: {e}"),
            )
        }
    };
    let (reply, outcome) = oneshot::channel();
    if let Err(refused) = shared.cutover.request(body.into_request(reply)) {
        return error(StatusCode::CONFLICT, &refused.to_string());
    }
    match outcome.await {
        Ok(Outcome::Done(Some(report))) => axum::Json(report).into_response(),
        Ok(Outcome::Done(None)) => {
            axum::Json(json!({ "verified": false, "tailing": "stopped" })).into_response()
        }
        Ok(Outcome::Abandoned(why)) => error(StatusCode::CONFLICT, &why),
        Ok(Outcome::Failed(why)) => error(StatusCode::INTERNAL_SERVER_ERROR, &why),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "oplog sync stopped before the cutover ended",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }

    fn post(body: &str) -> String {
        format!(
            "POST /cutover HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn serves_status_metrics_and_refuses_bad_requests() {
        let server = serve("127.0.0.1", 0, Status::shared(), Control::shared())
            .await
            .unwrap();
        let addr = server.addr;
        assert!(addr.ip().is_loopback());
        for (path, expect) in [
            ("/", "\"stage\":\"initializing\""),
            ("/metrics", "mongomirror_spool_bytes 0"),
            ("/nope", "404 Not Found"),
        ] {
            let reply = exchange(
                addr,
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            )
            .await;
            assert!(reply.contains(expect), "{path}: {reply}");
        }
        // A client that sends half a request head stalls nobody else.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let reply = exchange(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // Cutover requests: not in oplog sync yet, malformed, too large, wrong method.
        let reply = exchange(addr, &post("")).await;
        assert!(reply.starts_with("HTTP/1.1 409"), "{reply}");
        assert!(reply.contains("possible only during oplog sync"), "{reply}");
        let reply = exchange(addr, &post("{\"quiet\": 1}")).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        assert!(reply.contains("quietSeconds"), "{reply}");
        let reply = exchange(addr, &post(&"x".repeat(MAX_BODY + 1))).await;
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        let reply = exchange(
            addr,
            "GET /cutover HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
        drop(slow);
        server.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
