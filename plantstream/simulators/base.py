"""Start/stop plumbing shared by the plant simulators (Modbus, OPC UA): servers plus an update task."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class ServedSimulator:
    """Subclasses provide `start()` (bind the servers, create `_task`) and `_stop_servers()`."""

    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def _stop_servers(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop updating and shut every server down (open client connections are closed).

        Re-raises the error that stopped the update loop, if one did.
        """
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await self._stop_servers()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set (or the update loop fails, which then raises here)."""
        await self.start()
        assert self._task is not None
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopper, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            await self.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
