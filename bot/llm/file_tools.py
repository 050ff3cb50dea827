"""Read-only file tools for the HTTP providers (L7): read, grep and list in the project.

Offered when ``[llm] tools`` is not ``commands`` and the turn runs in a project directory
(:attr:`~bot.llm.base.TurnRequest.cwd`). Every path is resolved (symlinks and ``..``
included) and refused unless it stays inside that directory; walks skip what leads out of
it and ``.git``. Nothing here writes. Results are capped so one call cannot flood the
model's context.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.llm.base import Tool, TurnRequest

MAX_READ_BYTES = 100_000
MAX_MATCHES = 200
MAX_ENTRIES = 500
_SKIP_DIRS = {".git"}

_PATH = {"type": "string", "description": "a path relative to the project directory"}
TOOLS = (
    Tool(
        "read_file",
        "Read a text file of the project (at most 100 kB), with line numbers.",
        {"type": "object", "properties": {"path": _PATH}, "required": ["path"]},
    ),
    Tool(
        "grep_files",
        "Search the project's text files for a regular expression; path:line: text lines.",
        {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "a Python regular expression"},
                "path": {**_PATH, "description": "where to search (default: everywhere)"},
            },
            "required": ["pattern"],
        },
    ),
    Tool(
        "list_files",
        "List a directory of the project (directories end with /).",
        {"type": "object", "properties": {"path": {**_PATH, "description": "default: the top"}}},
    ),
)
NAMES = frozenset(t.name for t in TOOLS)


class FileToolError(Exception):
    """A call the tools refuse (outside the project, not a file, bad pattern): told to the
    model as the tool's result."""


def offered(request: TurnRequest) -> bool:
    """Whether ``request``'s turn gets the file tools."""
    return request.tool_access != "commands" and request.cwd is not None


def tools_for(request: TurnRequest) -> tuple[Tool, ...]:
    """``request.tools``, plus the file tools when the turn gets them."""
    return request.tools + TOOLS if offered(request) else request.tools


async def call(request: TurnRequest, name: str, arguments: dict[str, Any]) -> str | None:
    """Run file tool ``name`` for ``request``'s turn; None when ``name`` is not one of them.

    Runs in a worker thread; a refusal comes back as text starting ``Refused:``.
    """
    if name not in NAMES or not offered(request) or request.cwd is None:
        return None
    try:
        return await asyncio.to_thread(_run, request.cwd, name, arguments)
    except FileToolError as err:
        return f"Refused: {err}"


def _run(root: Path, name: str, arguments: dict[str, Any]) -> str:
    base = root.resolve()
    target = confined(base, str(arguments.get("path") or "."))
    if name == "read_file":
        return read_file(base, target)
    if name == "grep_files":
        return grep_files(base, target, str(arguments.get("pattern") or ""))
    return list_files(base, target)


def confined(base: Path, path: str) -> Path:
    """``path`` resolved from ``base``; raises FileToolError when it leads outside ``base``."""
    resolved = (base / path).resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise FileToolError(f"{path} is outside the project directory")
    return resolved


def read_file(base: Path, target: Path) -> str:
    if not target.is_file():
        raise FileToolError(f"{_shown(base, target)} is not a file")
    with target.open("rb") as file:
        data = file.read(MAX_READ_BYTES + 1)
    if b"\0" in data:
        raise FileToolError(f"{_shown(base, target)} is not a text file")
    text = data[:MAX_READ_BYTES].decode(errors="replace")
    lines = [f"{n:>5}\t{line}" for n, line in enumerate(text.splitlines(), 1)]
    more = "\n(cut at 100 kB)" if len(data) > MAX_READ_BYTES else ""
    return "\n".join(lines) + more or "(empty file)"


def grep_files(base: Path, target: Path, pattern: str) -> str:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise FileToolError(f"bad pattern {pattern!r}: {err}") from None
    found: list[str] = []
    for path in _walk(base, target):
        try:
            data = path.read_bytes()[:MAX_READ_BYTES]
        except OSError:
            continue
        if b"\0" in data:
            continue
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            if regex.search(line):
                found.append(f"{_shown(base, path)}:{n}: {line[:300]}")
                if len(found) >= MAX_MATCHES:
                    return "\n".join(found) + f"\n(stopped at {MAX_MATCHES} matches)"
    return "\n".join(found) or "No matches."


def list_files(base: Path, target: Path) -> str:
    if not target.is_dir():
        raise FileToolError(f"{_shown(base, target)} is not a directory")
    entries = []
    for entry in sorted(target.iterdir()):
        inside = entry.resolve().is_relative_to(base)
        if entry.name in _SKIP_DIRS or not inside:
            continue
        entries.append(entry.name + ("/" if entry.is_dir() else ""))
        if len(entries) >= MAX_ENTRIES:
            entries.append(f"(stopped at {MAX_ENTRIES} entries)")
            break
    return "\n".join(entries) or "(empty directory)"


def _walk(base: Path, target: Path) -> Iterator[Path]:
    """The files under ``target`` (or ``target`` itself) whose real path is in ``base``."""
    if target.is_file():
        yield target
        return
    for directory, dirs, files in os.walk(target):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            path = Path(directory, name)
            if path.resolve().is_relative_to(base) and path.is_file():
                yield path


def _shown(base: Path, path: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
