//! A blocking socket as an async stream, for the lane worker, with an optional deadline
//! for the lane's handshake.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A blocking socket as an async stream: each poll makes the system call and waits in it.
/// For the lane worker, whose thread has nothing else to do: a job comes, is run, its
/// result goes, with no readiness polling in between.
///
/// Because every poll blocks, an async timeout around the stream's use never gets the
/// chance to fire; a [`Deadline`] bounds it instead: while it is set, each read and write
/// waits at most until the deadline (the socket's timeouts are shrunk to the time left
/// before each call), so a peer that trickles a byte now and then cannot stretch the
/// handshake past it.
pub(super) struct Blocking {
    socket: TcpStream,
    deadline: Arc<Deadline>,
}

impl Blocking {
    /// `socket`, bounded by `deadline` while that is set.
    pub(super) fn new(socket: TcpStream, deadline: Arc<Deadline>) -> Self {
        Blocking { socket, deadline }
    }

    /// Before a call: the time left, set as the socket's timeout for `set`; an error once
    /// the deadline has passed. Nothing when the deadline is lifted.
    fn bound(
        &self,
        set: fn(&TcpStream, Option<Duration>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let Some(left) = self.deadline.left() else {
            return Ok(());
        };
        if left.is_zero() {
            return Err(self.deadline.passed());
        }
        set(&self.socket, Some(left))
    }

    /// A call's result, with the socket's timeout reported as the deadline passing.
    fn timed(&self, result: std::io::Result<usize>) -> std::io::Result<usize> {
        match result {
            Err(e) if is_timeout(&e) && self.deadline.left().is_some() => {
                Err(self.deadline.passed())
            }
            other => other,
        }
    }
}

/// The errors a socket timeout gives (`EAGAIN` on Unix, `WSAETIMEDOUT` elsewhere).
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A point in time that bounds every call of the [`Blocking`] streams that share it, until
/// it is lifted.
#[derive(Debug)]
pub(super) struct Deadline {
    at: Instant,
    /// How long was allowed, for the error.
    allowed: Duration,
    lifted: AtomicBool,
}

impl Deadline {
    /// A deadline `allowed` from now.
    pub(super) fn after(allowed: Duration) -> Arc<Self> {
        Arc::new(Deadline {
            at: Instant::now() + allowed,
            allowed,
            lifted: AtomicBool::new(false),
        })
    }

    /// From now on, calls are no longer bounded by the deadline. The caller sets the
    /// socket's own timeouts again: the last shrunk ones stay in place until then.
    pub(super) fn lift(&self) {
        self.lifted.store(true, Ordering::Relaxed);
    }

    /// Whether the deadline has passed without being lifted.
    pub(super) fn has_passed(&self) -> bool {
        self.left().is_some_and(|left| left.is_zero())
    }

    /// How long was allowed.
    pub(super) fn allowed(&self) -> Duration {
        self.allowed
    }

    /// Time left before the deadline; `None` once lifted.
    fn left(&self) -> Option<Duration> {
        if self.lifted.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.at.saturating_duration_since(Instant::now()))
    }

    fn passed(&self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("not done within {:?}", self.allowed),
        )
    }
}

impl AsyncRead for Blocking {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let read = loop {
            if let Err(e) = self.bound(TcpStream::set_read_timeout) {
                break Err(e);
            }
            match (&self.socket).read(buf.initialize_unfilled()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break self.timed(other),
            }
        };
        Poll::Ready(read.map(|n| buf.advance(n)))
    }
}

impl AsyncWrite for Blocking {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = self
            .bound(TcpStream::set_write_timeout)
            .and_then(|()| (&self.socket).write(buf));
        Poll::Ready(self.timed(written))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.socket.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use tokio::io::AsyncReadExt;

    /// A connected pair: the accepted end as a `Blocking` bounded by `deadline`, and the
    /// peer.
    fn pair(deadline: &Arc<Deadline>) -> (Blocking, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (Blocking::new(ours, Arc::clone(deadline)), peer)
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_peer_that_trickles_bytes_cannot_stretch_reads_past_the_deadline() {
        let deadline = Deadline::after(Duration::from_millis(300));
        let (mut ours, mut peer) = pair(&deadline);
        let trickle = std::thread::spawn(move || {
            // One byte every 50 ms for up to 10 s: each read alone would succeed.
            for _ in 0..200 {
                if peer.write_all(&[1]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let mut buf = vec![0u8; 1000];
        let error = block_on(ours.read_exact(&mut buf)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
        assert!(deadline.has_passed());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(ours);
        trickle.join().unwrap();
    }

    #[test]
    fn a_lifted_deadline_bounds_nothing() {
        let deadline = Deadline::after(Duration::ZERO);
        deadline.lift();
        assert!(!deadline.has_passed());
        let (mut ours, mut peer) = pair(&deadline);
        peer.write_all(b"ok").unwrap();
        let mut buf = [0u8; 2];
        block_on(ours.read_exact(&mut buf)).unwrap();
        assert_eq!(&buf, b"ok");
    }
}
