//! Whether a connection goes through a connection pooler (PgBouncer, Odyssey, pgcat ...): a
//! pooler hands each client a cancel key of its own making, so the process id in the key the
//! client was given differs from the server backend's `pg_backend_pid()`. The key is private to
//! the driver, so it is read the one way the driver writes it: a cancel request sent into an
//! in-memory pipe (nothing reaches any server, nothing is cancelled).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream, ReadBuf,
};
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// What a pooler between us and the server keeps (`server.pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Find out: a pooler, when seen, is taken to pool by transaction.
    Detect,
    /// Sessions may not outlive a transaction (PgBouncer's `pool_mode = transaction`).
    Transaction,
    /// Each client keeps its server session (`pool_mode = session`), or there is no pooler.
    Session,
}

impl PoolMode {
    /// Whether session state (a session lock, a `SET`, a second connection's work waiting on
    /// the first's open transaction) may be relied on over `client`. When detection cannot tell
    /// (the probe failed or timed out), no: the pooled way is only slower, or asks for
    /// `server.pool_mode`, where relying on a session that is not there can deadlock.
    pub async fn sessions_hold(self, client: &Client) -> bool {
        match self {
            PoolMode::Session => true,
            PoolMode::Transaction => false,
            PoolMode::Detect => behind_pooler(client).await == Some(false),
        }
    }
}

/// `Some(true)` when the session's cancel key is not its backend's (a pooler in between),
/// `Some(false)` when it is, `None` when it could not be told.
pub async fn behind_pooler(client: &Client) -> Option<bool> {
    let backend: i32 = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .ok()?
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })?;
    let key = tokio::time::timeout(Duration::from_secs(2), key_pid(client))
        .await
        .ok()
        .flatten()?;
    Some(key != backend)
}

/// The process id of the session's cancel key.
async fn key_pid(client: &Client) -> Option<i32> {
    let (ours, mut theirs) = tokio::io::duplex(256);
    let token = client.cancel_token();
    let writer = tokio::spawn(async move { token.cancel_query_raw(ours, Passthrough).await });
    let mut head = [0u8; 8];
    theirs.read_exact(&mut head).await.ok()?;
    // An SSLRequest first (sslmode prefer or require): say yes, and the pass-through "TLS"
    // hands the plain pipe on.
    if head[..4] == 8u32.to_be_bytes() && head[4..] == 80_877_103u32.to_be_bytes() {
        theirs.write_all(b"S").await.ok()?;
        theirs.read_exact(&mut head).await.ok()?;
    }
    // CancelRequest: length 16, code 80877102, process id, secret key.
    if head[..4] != 16u32.to_be_bytes() || head[4..] != 80_877_102u32.to_be_bytes() {
        return None;
    }
    let mut pid = [0u8; 4];
    theirs.read_exact(&mut pid).await.ok()?;
    drop(theirs);
    let _ = writer.await;
    Some(i32::from_be_bytes(pid))
}

/// A "TLS" that is no TLS: the pipe as it is.
struct Passthrough;

impl TlsConnect<DuplexStream> for Passthrough {
    type Stream = Plain;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Plain, std::io::Error>>;

    fn connect(self, stream: DuplexStream) -> Self::Future {
        std::future::ready(Ok(Plain(stream)))
    }
}

struct Plain(DuplexStream);

impl TlsStream for Plain {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
