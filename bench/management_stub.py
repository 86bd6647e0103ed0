"""A stand-in for the Management API in its own process: answers each `@connections` POST after 20 ms.

A bare asyncio protocol, so the stand-in's own CPU stays small next to the client's being measured.
Prints its port, then serves until killed."""

from __future__ import annotations

import asyncio

DELAY_S = 0.02
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
GONE = b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\nContent-Length: 0\r\n\r\n"


class Stub(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length")
                ),
                0,
            )
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(" ", 2)[1]
            reply = GONE if path.rsplit("/", 1)[-1].startswith("gone") else OK
            asyncio.get_running_loop().call_later(DELAY_S, self.transport.write, reply)


async def main() -> None:
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
