"""Stopping a fake's aiohttp server without leaving sockets for the garbage collector."""

from __future__ import annotations

import asyncio

from aiohttp import web

LATE_PASSES = 3  # loop passes an accepted socket takes to become a connection


async def close_runner(runner: web.AppRunner) -> None:
    """``runner.cleanup()``, then close what it could not see, and let the closes run.

    A connection accepted just before the listening socket closed reaches the server only
    a pass or two later, after ``cleanup`` closed the connections it knew of: it is closed
    here. Closing a transport only schedules the socket's close (``call_soon``): a test
    whose loop stops right after would leave it to the garbage collector, and its
    ``ResourceWarning`` fails whichever later test happens to be running then.
    """
    server = runner.server
    await runner.cleanup()
    for _ in range(LATE_PASSES):
        await asyncio.sleep(0)
        for handler in server.connections if server is not None else ():
            handler.force_close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
