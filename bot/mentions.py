"""Recognise and strip the bot's name or user id at the start of a message (I4)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


def strip_mention(text: str, names: Iterable[str]) -> tuple[str, bool]:
    """Remove a leading mention of the bot; return the rest and whether one was found.

    Recognised forms, case-insensitive for names: ``@name``, ``name:``, ``name,``,
    ``@name:example.org`` (Matrix ids given in ``names``), ``<@U123>`` / ``<@!123>``
    (Slack and Discord user ids given in ``names``).
    """
    stripped = text.lstrip()
    for name in _longest_first(tuple(names)):
        pattern = _pattern(name)
        match = pattern.match(stripped)
        if match:
            return stripped[match.end() :].lstrip(), True
    return text.strip(), False


@functools.lru_cache(maxsize=256)
def _pattern(name: str) -> re.Pattern[str]:
    bare = name.lstrip("@")
    escaped = re.escape(bare)
    forms = [
        rf"<@!?{escaped}>",  # Slack / Discord
        rf"@{escaped}(?![\w.-])",  # @name or a full Matrix id
        rf"{escaped}(?=[:,])",  # name: / name,
    ]
    return re.compile(rf"(?:{'|'.join(forms)})[:,]?", re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _longest_first(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({n for n in names if n}, key=len, reverse=True))
