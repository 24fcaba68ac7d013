//! A bare HTTP/1.1 client for the status port: requests are written by hand, so that tests see
//! exactly what the server answers (status line and body), malformed requests included.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Pair, Running};

const LINE_TIMEOUT: Duration = Duration::from_secs(90);

/// The port from `status server listening on http://HOST:PORT/`.
pub async fn status_port(mirror: &Running) -> u16 {
    let line = status_line(mirror).await;
    let after = line.split("http://").nth(1).unwrap();
    let addr = after.split('/').next().unwrap();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The log line that names the status server's address.
pub async fn status_line(mirror: &Running) -> String {
    mirror
        .wait_for_line("status server listening on http://", LINE_TIMEOUT)
        .await
        .unwrap()
}

/// Starts mongomirror between the pair with a status server on a free port.
pub async fn start_with_status(pair: &Pair) -> (Running, u16) {
    start_with_status_and(pair, &[]).await
}

/// [`start_with_status`] with more flags.
pub async fn start_with_status_and(pair: &Pair, extra: &[&str]) -> (Running, u16) {
    let mirror = pair
        .mongomirror()
        .args(["--httpStatusPort", "0"])
        .args(extra)
        .spawn();
    let port = status_port(&mirror).await;
    (mirror, port)
}

/// Sends `method path` with `body` (and `Connection: close`); returns (status line, body).
pub async fn request(port: u16, method: &str, path: &str, body: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// `GET path`: (status line, body).
pub async fn get(port: u16, path: &str) -> (String, String) {
    request(port, "GET", path, "").await
}

/// `GET /` as JSON.
pub async fn get_json(port: u16) -> serde_json::Value {
    let (status, body) = get(port, "/").await;
    assert!(status.contains("200"), "{status}");
    serde_json::from_str(&body).unwrap()
}
