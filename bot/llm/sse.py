"""Server-sent events: split a streamed HTTP body into ``event``/``data`` records.

Lines end only at ``\\r\\n``, ``\\n`` or ``\\r`` as the SSE spec says; unlike ``str.splitlines``
a U+2028 inside a JSON string does not cut a ``data:`` line in two.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

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
