//! Helpers shared by the integration tests: TCP pairs on 127.0.0.1, a time bound for every
//! test, and a writer that records or alters what a client sends.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use pp_net::{accept_server, connect_client, ChannelConfig, NetError, Secret};
use pp_net::{SecureReader, SecureWriter};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};

/// The bound on each test: generous, so a slow machine does not fail it; it only turns a
/// hang into a failure.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Both halves of one end of a channel.
pub type Halves = (SecureReader, SecureWriter);

/// Runs `f`, failing the test if it has not finished within [`TEST_LIMIT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test hung: it did not finish within its time bound")
}

/// The secret the tests share (static, so that futures in `join!` can borrow it).
pub fn secret() -> &'static Secret {
    static SECRET: OnceLock<Secret> = OnceLock::new();
    SECRET.get_or_init(|| Secret::new("correct horse battery staple, but longer").unwrap())
}

/// A listener on a free port of 127.0.0.1.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Two ends of one TCP connection on 127.0.0.1: (client, server).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Runs both sides of the handshake on a fresh connection: (client, server).
pub async fn handshake(
    client_secret: &Secret,
    server_secret: &Secret,
    client_config: ChannelConfig,
    server_config: ChannelConfig,
) -> (Result<Halves, NetError>, Result<Halves, NetError>) {
    let (client, server) = tcp_pair().await;
    tokio::join!(
        connect_client(client, client_secret, client_config),
        accept_server(server, server_secret, server_config),
    )
}

/// An authenticated channel with default limits: (client, server).
pub async fn connected() -> (Halves, Halves) {
    let config = ChannelConfig::default();
    let (client, server) = handshake(secret(), secret(), config, config).await;
    (client.unwrap(), server.unwrap())
}

/// What a [`Tap`] has seen and what it should do.
#[derive(Default)]
pub struct TapControl {
    /// Every byte written through the tap, as it was before any alteration.
    pub recorded: Vec<u8>,
    /// Absolute offset of a byte to flip on its way out.
    pub flip_at: Option<u64>,
}

/// A writer that records what passes through it and can flip one byte.
pub struct Tap<W> {
    pub inner: W,
    pub control: Arc<Mutex<TapControl>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Tap<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut control = this.control.lock().unwrap();
        let start = control.recorded.len() as u64;
        let mut out = buf.to_vec();
        if let Some(at) = control.flip_at {
            if (start..start + buf.len() as u64).contains(&at) {
                out[(at - start) as usize] ^= 0x01;
            }
        }
        let poll = Pin::new(&mut this.inner).poll_write(cx, &out);
        if let Poll::Ready(Ok(n)) = poll {
            control.recorded.extend_from_slice(&buf[..n]);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
