"""A base for fakes that serve an aiohttp app on 127.0.0.1 from their own loop and thread.

Synchronous tests (a daemon subprocess) and async tests can both use such a fake:
``with Fake() as fake: …``; :meth:`call` runs a coroutine on the fake's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

from aiohttp import web

from tests.fakes.runner import close_runner

T = TypeVar("T")


class ThreadedServer:
    """Subclasses fill ``self.app`` (in ``__init__``) and may override :meth:`closing`."""

    def __init__(self, name: str) -> None:
        self.app = web.Application()
        self.url = ""
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self.call(self._start())
        except BaseException:  # stop the thread, or the test process never exits
            with contextlib.suppress(Exception):
                self.call(self._stop())
            self._halt()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self._stop())
        finally:
            self._halt()

    def _halt(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the fake's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @staticmethod
    def wait(predicate: Callable[[], object], timeout: float = 15.0) -> bool:
        """Poll ``predicate`` until it is truthy or ``timeout`` passes; returns the outcome."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    async def opening(self) -> None:
        """Set up what the app needs on this loop (a database) before it serves."""

    async def closing(self) -> None:
        """Close what the app holds open (websockets) before the runner stops."""

    async def _start(self) -> None:
        await self.opening()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self.closing()
        if self._runner is not None:
            await close_runner(self._runner)
