"""A loopback TCP proxy that can stall: it stops forwarding without closing anything, then resumes.

A stall is what a congested or half-dead network link looks like to a client: the connection stays
open, requests go out, answers just do not come back. While paused the proxy reads nothing, so the
bytes wait in the kernel's socket buffers and arrive late after `resume()` (stale answers included),
which is the hard case for a client's request/response matching.
"""

from __future__ import annotations

import asyncio
import contextlib


class StallProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self._running = asyncio.Event()
        self._running.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.held_bytes = 0  # bytes that arrived while paused and waited for resume(): proof the stall bit

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> StallProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def close(self) -> None:
        self._running.set()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await t
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> StallProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()  # target down: the client sees a refused/reset connection, like a direct one
            return
        self.connections += 1
        self._writers.update((client_w, upstream_w))
        for src, dst in ((client_r, upstream_w), (upstream_r, client_w)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._running.wait()
                data = await src.read(65536)
                if not data:
                    break
                if not self._running.is_set():
                    self.held_bytes += len(data)
                await self._running.wait()  # a stall that began during the read holds these bytes too
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(dst)
            dst.close()
