"""A small Markdown → HTML renderer for ``formatted_body`` (no dependency).

Covers what LLM answers and command replies use: paragraphs (single newlines become
``<br>``), fenced and inline code, ``**bold**``, ``*italic*``/``_italic_``, ``[links](url)``
(http, https and mailto only), ``-``/``*``/``1.`` lists and ``#`` headings. Everything else
is text: all HTML in the input is escaped, so the output is safe to hand to a client.
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+#.-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*(\d{1,9})[.)]\s+(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?://|mailto:)[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)")


def render(text: str) -> str:
    """Render ``text`` (Markdown) to HTML."""
    out: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            i = _code_block(lines, i, fence, out)
        elif not line.strip():
            i += 1
        elif heading := _HEADING.match(line):
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
        elif _BULLET.match(line) or _NUMBERED.match(line):
            i = _list(lines, i, out)
        else:
            i = _paragraph(lines, i, out)
    return "\n".join(out)


def inline(text: str) -> str:
    """Escape ``text`` and render code spans, links, bold and italic."""
    held: list[str] = []

    def hold(markup: str) -> str:
        held.append(markup)
        return f"\x00{len(held) - 1}\x00"

    def code(match: re.Match[str]) -> str:
        return hold(f"<code>{html.escape(match.group(2).strip())}</code>")

    def link(match: re.Match[str]) -> str:
        url = html.escape(match.group(2), quote=True)
        return hold(f'<a href="{url}">{_styles(html.escape(match.group(1)))}</a>')

    text = _CODE_SPAN.sub(code, text.replace("\x00", ""))
    text = _styles(html.escape(_LINK.sub(link, text), quote=False))
    while "\x00" in text:  # a held piece may hold another (code inside a link)
        text = re.sub(r"\x00(\d+)\x00", lambda m: held[int(m.group(1))], text)
    return text


def _styles(text: str) -> str:
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    return _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)


def _code_block(lines: list[str], i: int, fence: re.Match[str], out: list[str]) -> int:
    marker, lang = fence.group(1), fence.group(2)
    body: list[str] = []
    i += 1
    while i < len(lines) and lines[i].strip() != marker:
        body.append(lines[i])
        i += 1
    attr = f' class="language-{html.escape(lang, quote=True)}"' if lang else ""
    out.append(f"<pre><code{attr}>{html.escape(chr(10).join(body))}\n</code></pre>")
    return i + 1


def _list(lines: list[str], i: int, out: list[str]) -> int:
    ordered = _BULLET.match(lines[i]) is None
    pattern = _NUMBERED if ordered else _BULLET
    items: list[str] = []
    start = ""
    while i < len(lines):
        match = pattern.match(lines[i])
        if match:
            if ordered and not items and match.group(1) != "1":
                start = f' start="{int(match.group(1))}"'
            items.append(match.group(match.lastindex or 1))
        elif lines[i].strip() and items and lines[i].startswith((" ", "\t")):
            items[-1] += "\n" + lines[i].strip()  # a continuation line of the item
        else:
            break
        i += 1
    tag = "ol" if ordered else "ul"
    rendered = "".join(f"<li>{inline(item).replace(chr(10), '<br>')}</li>" for item in items)
    out.append(f"<{tag}{start}>{rendered}</{tag}>")
    return i


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or _FENCE.match(line) or _HEADING.match(line):
            break
        if body and (_BULLET.match(line) or _NUMBERED.match(line)):
            break
        body.append(line.strip())
        i += 1
    out.append(f"<p>{inline(chr(10).join(body)).replace(chr(10), '<br>')}</p>")
    return i
