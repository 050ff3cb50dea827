"""Turn a stream of text deltas into paragraphs, and long text into platform-sized chunks (L3)."""

from __future__ import annotations


class ParagraphBuffer:
    """Collects deltas; :meth:`feed` returns every paragraph completed so far.

    A paragraph is complete when a blank line follows it, except inside a fenced code block
    (```), which is kept whole.
    """

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        done: list[str] = []
        while True:
            cut = self._boundary()
            if cut < 0:
                return done
            paragraph, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip("\n")
            if paragraph.strip():
                done.append(paragraph.strip("\n"))

    def flush(self) -> str:
        """The unfinished rest (at the end of a turn)."""
        rest, self._buffer = self._buffer.strip("\n"), ""
        return rest if rest.strip() else ""

    def _boundary(self) -> int:
        start = 0
        while True:
            cut = self._buffer.find("\n\n", start)
            if cut < 0:
                return -1
            if self._buffer.count("```", 0, cut) % 2 == 0:
                return cut
            start = cut + 2


def split_text(text: str, max_length: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_length`` characters.

    Splits at paragraph boundaries first, then lines, then words; a single word longer than
    ``max_length`` is cut hard. Joining the chunks loses only the whitespace at the cuts;
    chunks that would hold only whitespace are left out.
    """
    if len(text) <= max_length:
        return [text]
    for separator in ("\n\n", "\n", " "):
        parts = text.split(separator)
        if len(parts) > 1:
            return _pack(parts, separator, max_length)
    return [text[i : i + max_length] for i in range(0, len(text), max_length)]


def _pack(parts: list[str], separator: str, max_length: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for part in parts:
        candidate = part if not current else current + separator + part
        if len(candidate) <= max_length:
            current = candidate
            continue
        if current:
            chunks.append(current)
        if len(part) > max_length:
            pieces = split_text(part, max_length) or [""]
            chunks.extend(pieces[:-1])
            current = pieces[-1]
        else:
            current = part
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]
