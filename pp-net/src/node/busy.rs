//! What a connection evicted in its handshake is told (see `admission`): that the node was
//! busy, not that its secret is wrong.
//!
//! Eviction drops the handshake where it stands, with the connection in it. Left at that,
//! the client would see the node hang up after its first handshake message, which is what a
//! node with another secret does, and blame the secret. So the session keeps a second
//! handle on the socket while it is in its handshake, and on eviction after it answered the
//! client's preamble sends through it an empty message 2, which the client reads as "busy"
//! (the `handshake` module says why that cannot be a reply), then closes.

use std::io::{Read, Write};
use std::net::Shutdown;

use tokio::net::TcpStream;

/// Bytes of the client's handshake read and dropped at most before closing: what it sent
/// and the node did not read would make the close a reset, which could reach the client
/// before the notice. A handshake in flight is far smaller.
const DRAIN_LIMIT: usize = 16 << 10;

/// A second handle on a connection in its handshake, to tell its client it was evicted.
pub(crate) struct BusyNotice {
    /// `None` when the handle could not be made: the client then sees a plain close.
    socket: Option<std::net::TcpStream>,
}

impl BusyNotice {
    /// A notice for the connection `stream`.
    pub(crate) fn of(stream: &TcpStream) -> Self {
        #[cfg(unix)]
        let socket = {
            use std::os::fd::AsFd;
            stream
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .map(std::net::TcpStream::from)
        };
        #[cfg(not(unix))]
        let socket = {
            let _ = stream;
            None
        };
        BusyNotice { socket }
    }

    /// Tells the client that the node closed its handshake to make room, if the node's
    /// preamble was sent already (`answered`: the client then waits for message 2), then
    /// closes the connection. A connection whose preamble the node has not answered is
    /// simply closed: most are silent ones of a flood, and a client there reads the close
    /// as a node with its connections taken, not as a wrong secret. Never waits: the
    /// socket is non-blocking (the runtime's), and two bytes fit its empty send buffer.
    pub(crate) fn send(self, answered: bool) {
        let Some(mut socket) = self.socket.filter(|_| answered) else {
            return;
        };
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            match socket.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        // An empty message 2: its two length bytes, zero.
        let _ = socket.write_all(&[0, 0]);
        let _ = socket.shutdown(Shutdown::Write);
    }
}
