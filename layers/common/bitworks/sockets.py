"""One check shared by the database pool and the hand-signed AWS calls: has the peer of an idle,
kept-alive socket gone away? Costs a zero-timeout select(), no round trip."""

from __future__ import annotations

import select
import socket


def idle_peer_closed(sock: socket.socket | None) -> bool:
    """An idle request/response connection has nothing to read: data (a FATAL, an error page)
    or EOF means the server ended it. A socket not (or no longer) open counts as closed."""
    if sock is None:
        return True
    try:
        readable, _, broken = select.select([sock], [], [sock], 0)
    except (OSError, ValueError):  # closed or invalid descriptor
        return True
    return bool(readable or broken)
