"""Our replies' markdown → Slack mrkdwn (the ``text`` field of ``chat.postMessage``).

Slack's text format differs from markdown: ``*bold*``, ``_italic_``, ``~strike~``,
``<url|label>`` links, no headings; ``&``, ``<`` and ``>`` are control characters and
must be sent as ``&amp;``, ``&lt;`` and ``&gt;``. Slack decodes those three entities
everywhere, code included, so they are escaped inside code too; code spans and fenced
blocks otherwise pass through unchanged.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[^\n`]*\n(.*?)```|```(.*?)```", re.DOTALL)
_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+|mailto:[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.MULTILINE)
_HOLE = "\x00{}\x00"
_HOLES = re.compile("\x00(\\d+)\x00")


def escape(text: str) -> str:
    """Escape Slack's three control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(text: str) -> str:
    """Convert ``text`` (CommonMark-ish, as the LLM and commands write it) to mrkdwn.

    Code blocks and spans are kept verbatim (only escaped); links become ``<url|label>``;
    headings become a bold line; ``-``/``*`` bullets become ``•``; emphasis is rewritten.
    Text that is not markdown comes back unchanged apart from the escaping.
    """
    text = text.replace("\x00", "").replace("\x01", "")
    kept: list[str] = []

    def keep(rendered: str) -> str:
        kept.append(rendered)
        return _HOLE.format(len(kept) - 1)

    def fence(match: re.Match[str]) -> str:
        body = match[1] if match[1] is not None else match[2]
        return keep(f"```{escape(body.rstrip(chr(10)))}```")

    text = _FENCE.sub(fence, text)
    text = _CODE.sub(lambda m: keep(escape(m[0])), text)
    text = _LINK.sub(lambda m: keep(f"<{escape(m[2])}|{escape(m[1])}>"), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: keep(f"*{_heading(m[1])}*"), text)
    text = _emphasis(text)
    text = _BULLET.sub(lambda m: f"{m[1]}• ", text)
    while _HOLES.search(text):
        text = _HOLES.sub(lambda m: kept[int(m[1])], text)
    return text


def _heading(text: str) -> str:
    """A heading's text for a bold line: its own bold markers go, italics become ``_``."""
    text = _BOLD.sub(lambda m: m[1] if m[1] is not None else m[2], text)
    return _STRIKE.sub(r"~\1~", _ITALIC.sub(r"_\1_", text))


def _emphasis(text: str) -> str:
    bold: list[str] = []

    def hold(match: re.Match[str]) -> str:
        bold.append(match[1] if match[1] is not None else match[2])
        return f"\x01{len(bold) - 1}\x01"

    text = _BOLD.sub(hold, text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    return re.sub(
        "\x01(\\d+)\x01", lambda m: "*" + _ITALIC.sub(r"_\1_", bold[int(m[1])]) + "*", text
    )
