"""Stopping a fake's aiohttp server without leaving sockets for the garbage collector."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def close_runner(runner: web.AppRunner) -> None:
    """``runner.cleanup()``, then one more loop pass.

    Closing a connection's transport only schedules the socket's close (``call_soon``): a
    test whose loop stops right after would leave it to the garbage collector, and its
    ``ResourceWarning`` fails whichever later test happens to be running then.
    """
    await runner.cleanup()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
