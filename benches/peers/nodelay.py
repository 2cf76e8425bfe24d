"""ppft with TCP_NODELAY on its sockets: a run-time patch, for a note beside stock ppft.

ppft's SocketTransport writes each message as two `send` calls (an 8-byte length, then the
body) on sockets without TCP_NODELAY, so on a request-reply connection Nagle's algorithm
holds the body until the peer's delayed ACK: about 40 ms per message on Linux. `patch()`
sets TCP_NODELAY on every socket ppft's transport wraps (the client's connections and the
server's accepted ones); nothing else changes.

As a program it runs ppft's own `ppserver` with the patch:
    python nodelay.py -p PORT -i 127.0.0.1 -w 2 -s SECRET
"""

import socket
import sys


def patch():
    import ppft.transport as transport

    original = transport.SocketTransport.__init__
    if getattr(original, "_peers_nodelay", False):
        return

    def init(self, socket1, socket_timeout):
        original(self, socket1, socket_timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    init._peers_nodelay = True
    transport.SocketTransport.__init__ = init


def main(argv):
    patch()
    from ppft.server.__main__ import create_network_server

    server = create_network_server(argv)
    server.listen()


if __name__ == "__main__":
    main(sys.argv[1:])
