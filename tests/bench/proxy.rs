//! A TCP proxy that puts a wide-area link between the tool and a server: a fixed one-way delay
//! in each direction (so the round trip grows by twice the delay) and, optionally, a bandwidth
//! cap.
//!
//! The delay is a pipeline, not a queue of sleeps: every chunk read from one side is stamped on
//! arrival and written to the other side at arrival + delay, so a busy connection carries many
//! chunks at once, as a long link does, and bytes keep their order. With a bandwidth cap a
//! chunk also waits for the chunks before it to leave the link (`len / rate` each), as on a
//! slow line. Each direction holds at most [`WINDOW_BYTES`] read but not yet delivered; past
//! that the proxy stops reading and TCP's own flow control pushes back, like a full window.
//!
//! The proxy runs on a runtime of its own, on its own thread, so that whatever the caller
//! blocks on never delays a chunk. Dropping the [`Proxy`] stops it and closes its connections.
//!
//! A driver must reach the server through it with `directConnection=true`; otherwise it would
//! read the server's real address from `hello` and go around the proxy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

/// The most bytes one read takes from a socket: one chunk of the pipeline.
const CHUNK_BYTES: usize = 64 * 1024;
/// The most bytes each direction of a connection holds in flight (read, not yet delivered): a
/// large TCP window (Linux's default `tcp_rmem` maximum is 6 MiB).
pub const WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// The link a proxy puts between its clients and the server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Link {
    /// Added to each direction: the round trip grows by twice this.
    pub one_way: Duration,
    /// Bytes per second in each direction; `None`: as fast as the machine goes.
    pub bytes_per_second: Option<u64>,
}

impl Link {
    /// A link adding `rtt_ms` milliseconds of round trip, without a bandwidth cap.
    pub fn round_trip_ms(rtt_ms: u64) -> Link {
        Link {
            one_way: Duration::from_micros(rtt_ms * 500),
            bytes_per_second: None,
        }
    }

    /// Whether it adds nothing: callers then connect to the server directly.
    pub fn is_direct(&self) -> bool {
        self.one_way.is_zero() && self.bytes_per_second.is_none()
    }
}

/// A running proxy to one server; stopped when dropped.
pub struct Proxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free local port and forwards every connection to `upstream` over `link`.
    /// May be called from inside another runtime: the proxy's own is built and run on its
    /// thread.
    pub fn start(upstream: SocketAddr, link: Link) -> io::Result<Proxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("proxy {addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        serve(listener, upstream, link, stopped).await;
                    }
                });
            })?;
        Ok(Proxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until stopped; returning drops the runtime's tasks, which closes every connection.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    link: Link,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                direction(client_read, server_write, link),
                direction(server_read, client_write, link),
            );
        });
    }
}

/// One chunk on the link: its bytes and when it reaches the far end.
struct InFlight {
    bytes: Vec<u8>,
    arrives: Instant,
    /// Returns the chunk's share of the window once delivered.
    _window: tokio::sync::OwnedSemaphorePermit,
}

/// Carries one direction of a connection: the reader stamps chunks, the writer releases each at
/// its time. At end of stream the far side's write half is shut down after the last chunk.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link) {
    let window = Arc::new(Semaphore::new(WINDOW_BYTES));
    // Chunks hold at least one byte, so the window bounds the queue as well.
    let (tx, mut rx) = mpsc::unbounded_channel::<InFlight>();
    let reader = async move {
        // When the link is next free to start sending (the bandwidth cap's serialization).
        let mut line_free = Instant::now();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // A full window stops the reading here (one chunk past it at most).
            let Ok(permit) = window.clone().acquire_many_owned(n as u32).await else {
                return;
            };
            let now = Instant::now();
            let sent = match link.bytes_per_second {
                Some(rate) => {
                    let start = line_free.max(now);
                    line_free = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    line_free
                }
                None => now,
            };
            let chunk = InFlight {
                bytes: buf[..n].to_vec(),
                arrives: sent + link.one_way,
                _window: permit,
            };
            if tx.send(chunk).is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep_until(chunk.arrives).await;
            if to.write_all(&chunk.bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn adds_the_round_trip_and_keeps_byte_order_without_serializing_chunks() {
        let server = echo().await;
        let proxy = Proxy::start(server, Link::round_trip_ms(100)).unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();

        let started = std::time::Instant::now();
        stream.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).await.unwrap();
        let rtt = started.elapsed();
        assert_eq!(&reply, b"ping");
        assert!(rtt >= Duration::from_millis(100), "{rtt:?}");
        assert!(rtt < Duration::from_millis(400), "{rtt:?}");

        // Twenty writes 10 ms apart: pipelined, they all come back one round trip after the
        // last was sent, not twenty round trips later; and in order.
        let (mut r, mut w) = stream.into_split();
        let started = std::time::Instant::now();
        let sender = tokio::spawn(async move {
            for i in 0u8..20 {
                w.write_all(&[i; 1000]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            w
        });
        let mut back = vec![0u8; 20_000];
        r.read_exact(&mut back).await.unwrap();
        let elapsed = started.elapsed();
        let _w = sender.await.unwrap();
        for (i, chunk) in back.chunks(1000).enumerate() {
            assert!(
                chunk.iter().all(|b| *b == i as u8),
                "chunk {i} out of order"
            );
        }
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }

    #[tokio::test]
    async fn caps_the_bandwidth() {
        let server = echo().await;
        let link = Link {
            one_way: Duration::ZERO,
            bytes_per_second: Some(1_000_000),
        };
        let proxy = Proxy::start(server, link).unwrap();
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let started = std::time::Instant::now();
        // 200 KB each way at 1 MB/s: at least 0.2 s (both directions overlap).
        let sender = tokio::spawn(async move {
            w.write_all(&vec![7u8; 200_000]).await.unwrap();
            w
        });
        let mut back = vec![0u8; 200_000];
        r.read_exact(&mut back).await.unwrap();
        let _w = sender.await.unwrap();
        let elapsed = started.elapsed();
        assert!(back.iter().all(|b| *b == 7));
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }
}
