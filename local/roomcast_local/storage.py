"""DynamoDB for the local stack: moto's server in a process of its own, so that storage work never competes
with the WebSocket API for the stack's interpreter lock. `python -m roomcast_local.storage` prints the port it
listens on and serves until its stdin closes (so it ends with the stack, however the stack ends)."""

from __future__ import annotations

import asyncio
import signal
import sys


class Storage:
    def __init__(self, process: asyncio.subprocess.Process, endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint

    @classmethod
    async def start(cls) -> Storage:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "roomcast_local.storage",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError("the embedded DynamoDB (moto) did not start")
        return cls(process, line.decode().strip())

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def main() -> int:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access line per DynamoDB call otherwise
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the stack still writes its last $disconnects here

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
