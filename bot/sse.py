"""Server-sent events, both ways: the one reader (LLM APIs, ``musher say``) and the one
writer (the web room stream, the board stream).

Reading: lines end only at ``\\r\\n``, ``\\n`` or ``\\r`` as the SSE spec says; unlike
``str.splitlines`` a U+2028 inside a JSON string does not cut a ``data:`` line in two.

Writing: :class:`EventStreams` opens a stream for a request, caps how many are open per
room (or board) with a 429, and treats a client that goes away as the normal end of a
stream (one DEBUG line, no traceback).
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger("musher.http")

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its ``event:`` name (``message`` if none) and joined ``data:``."""

    event: str
    data: str


async def iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Yield the UTF-8 lines of a byte stream without their line ends.

    A ``\\r`` at the end of a chunk waits for the next one so a ``\\r\\n`` split across two
    chunks counts once. A last line without a line end is yielded at the end of the stream.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *lines, pending = _split(pending)
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    rest = _LINE_END.split(pending)
    if rest[-1] == "":
        rest.pop()
    for line in rest:
        yield line


def _split(text: str) -> list[str]:
    """Split at line ends; the last item is the unfinished rest (a trailing CR stays in it)."""
    held_cr = text.endswith("\r")
    parts = _LINE_END.split(text[:-1] if held_cr else text)
    if held_cr:
        parts[-1] += "\r"
    return parts


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """Group lines into events: a blank line dispatches; ``:`` comments are skipped.

    An event still open when the stream ends is dispatched too (lenient with servers that
    omit the final blank line); an event with no ``data:`` line is never dispatched.
    """
    name = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(name or "message", "\n".join(data))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if data:
        yield SseEvent(name or "message", "\n".join(data))


class SseWriter:
    """One open ``text/event-stream`` response."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

    async def send(self, event: str, data: object, event_id: int | None = None) -> None:
        """Write one event whose ``data`` is ``data`` as JSON (on one line)."""
        head = f"id: {event_id}\n" if event_id is not None else ""
        await self.response.write(f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode())

    async def comment(self, text: str) -> None:
        """Write a comment line (clients ignore it; it keeps proxies from timing out)."""
        await self.response.write(f": {text}\n\n".encode())


StreamBody = Callable[[SseWriter], Awaitable[None]]


class EventStreams:
    """Serves SSE responses, at most ``limit`` open at once per key (a room, a board)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    async def serve(self, request: web.Request, key: str, body: StreamBody) -> web.StreamResponse:
        """Run ``body`` on a new stream until it returns or the client leaves.

        Beyond the limit the answer is 429 with ``{"error"}`` and ``body`` never runs. A
        client that disconnects ends the stream quietly; a cancel (shutdown) propagates.
        """
        if self._open[key] >= self.limit:
            message = f"too many open streams for {key} (limit {self.limit}); close one first"
            return web.json_response({"error": message}, status=429)
        self._open[key] += 1
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await response.prepare(request)
            await body(SseWriter(response))
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
            log.debug("the client of a %s stream went away", key)
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]
        return response
