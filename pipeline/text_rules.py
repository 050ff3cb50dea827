"""Characters that must never be stored raw: controls, bidi controls, lone surrogates (R12).

NUL and other control characters break logs and terminals; bidi embeddings, overrides and
isolates (U+202A-U+202E, U+2066-U+2069) make a name or a command read differently than it
runs ("Trojan Source"); lone surrogates cannot be encoded as UTF-8 at all. The one home of
these rules, for every layer:

* messages: the web API refuses text holding them (:func:`first_unsafe`, a 400 naming the
  character); platforms that must be acknowledged anyway (Slack) have them removed
  (:func:`scrub`); tabs and line breaks are fine in a message;
* one-line texts a person names things with (titles, reasons): :func:`clean_line` takes them
  out together with the bidi marks (U+061C, U+200E, U+200F) and folds line breaks into
  spaces; the engine refuses a title that still holds one (:func:`has_hidden`).
"""

from __future__ import annotations

import re

BIDI_OVERRIDES = "\u202a-\u202e\u2066-\u2069"
BIDI_MARKS = "\u061c\u200e\u200f"

_UNSAFE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{BIDI_OVERRIDES}\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\t\n\r]")
_HIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI_OVERRIDES}{BIDI_MARKS}\ud800-\udfff]")


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


def clean_line(text: str) -> str:
    """``text`` as one line: tabs and line breaks become spaces, every other hidden
    character (controls, bidi overrides and marks, lone surrogates) is dropped, and runs
    of spaces are folded."""
    spaced = _LINE_BREAKS.sub(" ", text)
    return " ".join(_HIDDEN.sub("", spaced).split())


def has_hidden(text: str) -> bool:
    """Whether ``text`` holds a control character other than a line break, a bidi override
    or mark, or a lone surrogate."""
    return _HIDDEN.search(text.replace("\r", "").replace("\n", "")) is not None
