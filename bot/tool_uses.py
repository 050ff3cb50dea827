"""What a tool use is, as a room sees and allows it (L7): rendering, rules and confinement.

Pure functions over ``(tool, input)`` as the ``claude`` CLI names them (``Bash`` with a
``command``, ``Read``/``Edit``/``Write`` with a ``file_path``, ``Grep``/``Glob`` with a
``path``…). A *rule* is what ``approve always`` stores for a room: a tool name (``Edit``:
any edit inside the project) or, for ``Bash``, ``Bash(<program> *)`` (any simple command
starting with that program) or ``Bash(<exact command>)`` for a command line with shell
operators, which only that very line matches.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

READ_ONLY = ("Read", "Grep", "Glob", "LS", "NotebookRead")
"""The tools ``[llm] tools = "project"`` allows without asking (inside the project)."""

PATH_KEYS = ("file_path", "path", "notebook_path")
_SHELL_OPERATORS = re.compile(r"[;&|<>`$\n(){}]")
_RENDER_LIMIT = 300


def render(tool: str, tool_input: Mapping[str, Any], root: Path) -> str:
    """A short, safe one-line rendering: ``Bash: `ls -la``` or ``Edit: src/a.py (-2 +3 lines)``."""
    if tool == "Bash":
        return f"{tool}: {_code(str(tool_input.get('command', '')))}"
    path = next((str(tool_input[k]) for k in PATH_KEYS if isinstance(tool_input.get(k), str)), "")
    if not path:
        text = json.dumps(dict(tool_input), ensure_ascii=False, sort_keys=True)
        return f"{tool}: {_code(text)}"
    shown = _code(_relative(path, root))
    if tool == "Edit":
        removed, added = _lines(tool_input.get("old_string")), _lines(tool_input.get("new_string"))
        return f"{tool}: {shown} (-{removed} +{added} lines)"
    if tool == "MultiEdit":
        edits = [e for e in tool_input.get("edits") or [] if isinstance(e, dict)]
        removed = sum(_lines(e.get("old_string")) for e in edits)
        added = sum(_lines(e.get("new_string")) for e in edits)
        return f"{tool}: {shown} ({len(edits)} edits, -{removed} +{added} lines)"
    if tool == "Write":
        return f"{tool}: {shown} ({_lines(tool_input.get('content'))} lines)"
    pattern = tool_input.get("pattern")
    if isinstance(pattern, str):
        return f"{tool}: {_code(pattern)} in {shown}"
    return f"{tool}: {shown}"


def rule_for(tool: str, tool_input: Mapping[str, Any]) -> str:
    """The rule ``approve always`` stores for this use (see the module docstring)."""
    if tool != "Bash":
        return tool
    command = str(tool_input.get("command", "")).strip()
    words = _words(command)
    if words and not _SHELL_OPERATORS.search(command):
        return f"Bash({words[0]} *)"
    return f"Bash({command})"


def matches(rule: str, tool: str, tool_input: Mapping[str, Any]) -> bool:
    """Whether ``rule`` allows this use without asking."""
    if tool != "Bash":
        return rule == tool
    command = str(tool_input.get("command", "")).strip()
    if rule == f"Bash({command})":
        return True
    if not (rule.startswith("Bash(") and rule.endswith(" *)")):
        return False
    words = _words(command)
    simple = bool(words) and not _SHELL_OPERATORS.search(command)
    return simple and rule == f"Bash({words[0]} *)"


def escape(tool: str, tool_input: Mapping[str, Any], root: Path) -> str | None:
    """Why this use would reach outside ``root`` (a path, a symlink, ``..``), or None.

    File tools are judged by their path argument; a ``Bash`` command by each word after the
    program (and the part after an ``=``) read as a path from the project directory, so an
    absolute path, ``~``, ``..`` or a symlink leading out is refused.
    """
    base = root.resolve()
    if tool == "Bash":
        command = str(tool_input.get("command", ""))
        try:
            words = shlex.split(command)[1:]
        except ValueError:
            return "the command line could not be read (unbalanced quotes)"
        paths = [part for word in words for part in (word, word.partition("=")[2]) if part]
    else:
        paths = [str(tool_input[k]) for k in PATH_KEYS if isinstance(tool_input.get(k), str)]
    for path in paths:
        if not inside(base, path):
            return f"{path} is outside the project directory {base}"
    return None


def inside(base: Path, path: str) -> bool:
    """Whether ``path`` (relative to ``base``; symlinks and ``..`` resolved) is in ``base``."""
    try:
        resolved = (base / Path(path).expanduser()).resolve()
    except (OSError, RuntimeError):
        return False
    return resolved == base or resolved.is_relative_to(base)


def _words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return []


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _lines(text: object) -> int:
    return len(text.splitlines()) if isinstance(text, str) else 0


def _code(text: str) -> str:
    """``text`` as one inline code span: one line, no backticks, at most 300 characters."""
    flat = " ⏎ ".join(text.splitlines()).replace("`", "'")
    if len(flat) > _RENDER_LIMIT:
        flat = flat[: _RENDER_LIMIT - 1] + "…"
    return f"`{flat}`"
