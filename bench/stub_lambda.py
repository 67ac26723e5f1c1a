"""A tiny stand-in for the Lambda Invoke API on loopback: answers 202 to every POST (async invoke).

    python -m bench.stub_lambda   -> prints "stub ready http://127.0.0.1:PORT" and serves until killed.
Runs in its own process so that it does not share the measured process's GIL.

It is what the bench's hand-offs wait on, so it answers as cheaply as loopback allows: an
asyncio protocol that reads the request head and its Content-Length body, and writes one
prepared answer per request (keep-alive, pipelined requests in order). With http.server (a
thread per connection, the email package's header parser) one signed Invoke took 203 µs
(median of 2000) and 100 PostToConnection calls 14.4 ms; with this, 135 µs and 6.4 ms. What
is left is the caller's own work, which is what the bench is after.
"""

from __future__ import annotations

import asyncio

_ANSWER = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 0\r\nx-amzn-RequestId: bench\r\n\r\n"
_HEAD_END = b"\r\n\r\n"


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class _Endpoint(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while True:
            end = self.buffer.find(_HEAD_END)
            if end < 0:
                break
            size = end + len(_HEAD_END) + _content_length(bytes(self.buffer[:end]))
            if len(self.buffer) < size:
                break
            del self.buffer[:size]
            answers += 1
        if answers:
            self.transport.write(_ANSWER * answers)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Endpoint, "127.0.0.1", 0, backlog=128)  # a fan-out opens 32 at once
    port = server.sockets[0].getsockname()[1]
    print(f"stub ready http://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


def main() -> None:
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
