"""Characters that must never be stored raw: controls, bidi overrides, lone surrogates.

NUL and other control characters break logs and terminals; bidi embeddings, overrides
and isolates (U+202A-U+202E, U+2066-U+2069) make a name or a command read differently
than it runs ("Trojan Source"); lone surrogates cannot be encoded as UTF-8 at all. The
web API refuses text holding them (:func:`first_unsafe`, a 400 naming the character);
platforms that must be acknowledged anyway (Slack) have them removed (:func:`scrub`).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\t\n\r]")


def first_unsafe(text: str, *, multiline: bool = True) -> str | None:
    """The first character of ``text`` that is refused, as ``U+`` and its hex code point
    (``U+202E``); ``None`` if none.

    Tabs and line breaks are fine in ``multiline`` text (a message), not in a name.
    """
    found = _UNSAFE.search(text) or (None if multiline else _LINE_BREAKS.search(text))
    return None if found is None else f"U+{ord(found.group()):04X}"


def scrub(text: str) -> str:
    """``text`` without the refused characters (tabs and line breaks are kept)."""
    return _UNSAFE.sub("", text)
