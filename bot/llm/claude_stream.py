"""Parse ``claude -p --output-format stream-json`` output into turn events (no I/O)."""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

from bot.llm.base import Done, Failed, TextDelta, ToolCall, ToolResult, TurnEvent, Usage

log = logging.getLogger("musher.llm.claude")


class StreamParser:
    """Translates ``claude`` stream-json lines into turn events (no I/O).

    Text blocks are passed on as they arrive; text that follows a tool round trip starts a
    new paragraph. The ``result`` event yields :class:`Usage` at once (its cost was spent
    whatever happens next); the turn's verdict waits for the exit code (:meth:`finish`).
    Lines that are not JSON objects are logged and kept for the failure message.
    """

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.result: dict[str, Any] | None = None
        self.saw_text = False
        self.garbage: list[str] = []
        self._after_tool = False
        self._at_paragraph = True

    def feed_line(self, line: bytes) -> list[TurnEvent]:
        """Parse one stdout line; returns the events it carries (often none)."""
        text = line.decode(errors="replace").strip()
        if not text:
            return []
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.note_garbage(text)
            return []
        return self.feed(event)

    def note_garbage(self, text: str) -> None:
        log.warning("claude printed a line that is not stream-json: %.200s", text)
        if len(self.garbage) < 3:
            self.garbage.append(text[:200])

    def feed(self, event: dict[str, Any]) -> list[TurnEvent]:
        """Translate one decoded stream-json event."""
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            self._take_session(event)
        elif kind == "assistant":
            return self._assistant(_blocks(event))
        elif kind == "user":
            return [
                ToolResult(str(b.get("tool_use_id", "")), _result_text(b.get("content")))
                for b in _blocks(event)
                if b.get("type") == "tool_result"
            ]
        elif kind == "result":
            self.result = event
            self._after_tool = True  # a later answer (to a steered message) is a new paragraph
            if not _is_error(event):
                self._take_session(event)
            usage = _usage(event)
            return [usage] if usage != Usage() else []
        return []

    def result_errors(self) -> list[str]:
        """The ``errors`` of the result event, if any."""
        errors = (self.result or {}).get("errors")
        return [str(e) for e in errors] if isinstance(errors, list) else []

    def finish(self, returncode: int, stderr: list[str]) -> Done | Failed:
        """The verdict once claude has exited with ``returncode``."""
        result = self.result
        if result is not None and _is_error(result):
            return Failed(self._error_message(result))
        if returncode != 0 or result is None:
            return Failed(_exit_message(returncode, stderr, self.garbage))
        text = result.get("result")
        if self.saw_text or not isinstance(text, str) or not text:
            return Done()
        return Done(text)

    def _take_session(self, event: dict[str, Any]) -> None:
        session_id = event.get("session_id")
        if isinstance(session_id, str) and session_id:
            self.session_id = session_id

    def _assistant(self, blocks: list[dict[str, Any]]) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for block in blocks:
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                text: str = block["text"]
                if not text:
                    continue
                if self._after_tool and not self._at_paragraph:
                    text = "\n\n" + text
                self._after_tool = False
                self._at_paragraph = text.endswith("\n\n")
                self.saw_text = True
                events.append(TextDelta(text))
            elif block.get("type") == "tool_use":
                self._after_tool = True
                arguments = block.get("input")
                events.append(
                    ToolCall(
                        str(block.get("id", "")),
                        str(block.get("name", "")),
                        arguments if isinstance(arguments, dict) else {},
                    )
                )
        return events

    def _error_message(self, result: dict[str, Any]) -> str:
        subtype = result.get("subtype", "error")
        details = self.result_errors()
        if not details and isinstance(result.get("result"), str):
            details = [result["result"]]
        text = "; ".join(details) or "no details"
        return f"claude stopped with {subtype}: {text}"


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _result_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text") for b in content if isinstance(b, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _is_error(result: dict[str, Any]) -> bool:
    return result.get("subtype") != "success" or result.get("is_error") is True


def _usage(result: dict[str, Any]) -> Usage:
    raw = result.get("usage")
    usage: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) else 0

    inputs = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    cost = result.get("total_cost_usd")
    return Usage(
        sum(count(k) for k in inputs),
        count("output_tokens"),
        float(cost) if isinstance(cost, int | float) else 0.0,
    )


def _exit_message(returncode: int, stderr: list[str], garbage: list[str]) -> str:
    if returncode < 0:
        head = f"claude was killed by signal {-returncode} ({signal.strsignal(-returncode)})."
    elif returncode == 0:
        head = "claude exited without a result."
    else:
        head = f"claude exited with code {returncode}."
    parts = [head]
    if garbage:
        parts.append("It printed lines that are not stream-json:\n" + "\n".join(garbage))
    parts.append(
        "Last lines of its stderr:\n" + "\n".join(stderr) if stderr else "Nothing on stderr."
    )
    return "\n".join(parts)
