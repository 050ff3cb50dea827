"""Stopping a fake's aiohttp server without leaving sockets for the garbage collector."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

LATE_PASSES = 3  # loop passes an accepted socket takes to become a connection


async def close_runner(runner: web.AppRunner) -> None:
    """``runner.cleanup()`` without leaving a socket open, then let the closes run.

    Three ways a fake's socket outlived its test, each seen in CI as a ``ResourceWarning``
    failing whichever later test the garbage collector ran in (a daemon reconnecting at
    once, when the fake closed its websocket, hits them):

    - a connection accepted just before the listening socket closes becomes a transport a
      pass later, and on Python 3.11 that fails on the closed server (``Server._attach``
      asserts it is open), leaving the accepted socket open: so accepting stops first, and
      the accepts in flight finish before anything closes;
    - ``cleanup`` forgets the connections made while it waits (``Server.shutdown`` ends in
      ``clear()``): every connection made from here on is recorded and closed after it;
    - closing a transport only schedules the socket's close (``call_soon``): the loop gets
      the passes to run it.
    """
    loop = asyncio.get_running_loop()
    for listening in _listening(runner):
        loop.remove_reader(listening.fileno())
    server = runner.server
    made: list[RequestHandler] = list(server.connections) if server is not None else []
    if server is not None:
        register = server.connection_made

        def record(handler: RequestHandler, transport: asyncio.Transport) -> None:
            made.append(handler)
            register(handler, transport)

        setattr(server, "connection_made", record)  # noqa: B010 (an instance's method)
    for _ in range(LATE_PASSES):
        await asyncio.sleep(0)
    await runner.cleanup()
    for _ in range(LATE_PASSES):
        await asyncio.sleep(0)
        for handler in made:
            handler.force_close()


def _listening(runner: web.AppRunner) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    for site in runner.sites:
        listening = getattr(site, "_server", None)  # the site's asyncio.Server
        sockets.extend(getattr(listening, "sockets", None) or ())
    return sockets
