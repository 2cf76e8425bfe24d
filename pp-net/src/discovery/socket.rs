//! UDP sockets for discovery: shared ports and broadcast allowed.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// A UDP socket bound to `addr` that may send broadcasts.
///
/// With `shared`, the port may be bound by other sockets too (`SO_REUSEADDR`): every one of
/// them receives the broadcasts sent to it, so several nodes and clients on one host can
/// all use the discovery port.
pub(crate) fn bind(addr: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if shared {
        socket.set_reuse_address(true)?;
    }
    if addr.is_ipv4() {
        socket.set_broadcast(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
