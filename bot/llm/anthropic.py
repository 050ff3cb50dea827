"""The ``anthropic`` wire of :class:`~bot.llm.chat.ChatProvider`: the Messages API, streamed (L2).

The stream is ``message_start``, then per content block ``content_block_start`` (``text`` or
``tool_use``), ``content_block_delta`` (``text_delta`` or ``input_json_delta``) and
``content_block_stop``, then ``message_delta`` (stop reason, usage) and ``message_stop``;
an ``error`` event may arrive at any point.
"""

from __future__ import annotations

from typing import Any

from bot.llm.base import Tool
from bot.llm.chat import (
    SYSTEM_PROMPT,
    PendingCall,
    Step,
    StreamError,
    ToolOutcome,
    api_key,
    parse_json,
)
from bot.llm.history import Message
from bot.sse import SseEvent
from config.errors import PermanentError
from config.models import AnthropicConfig

ANTHROPIC_VERSION = "2023-06-01"
EMPTY_ANSWER = "(no answer)"
_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicWire:
    """Request and message shapes of ``POST {base_url}/v1/messages``."""

    name = "anthropic"

    def __init__(self, config: AnthropicConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/v1/messages"
        self._model = config.model
        self._max_tokens = config.max_tokens
        self._key = api_key(config)

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "Accept": "text/event-stream"}
        if self._key:
            headers["x-api-key"] = self._key
        return headers

    def body(self, messages: list[Message], tools: tuple[Tool, ...]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": self._max_tokens,
            "system": SYSTEM_PROMPT,
            "messages": messages,
            "stream": True,
        }
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
        return body

    def parser(self) -> AnthropicStream:
        return AnthropicStream()

    def user_message(self, prompt: str) -> Message:
        return {"role": "user", "content": prompt}

    def assistant_message(self, step: Step) -> Message:
        """Text first, then tool uses; never empty (the API refuses empty assistant turns)."""
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        for call in step.calls:
            content.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)}
            )
        return {"role": "assistant", "content": content or [{"type": "text", "text": EMPTY_ANSWER}]}

    def tool_results(self, outcomes: list[ToolOutcome], steered: str | None) -> list[Message]:
        """One user message: the results, then the room's new words (one turn, as the API
        wants tool results first in the message that follows the tool uses)."""
        blocks: list[dict[str, Any]] = []
        for o in outcomes:
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": o.id, "content": o.text}
            if o.is_error:
                block["is_error"] = True
            blocks.append(block)
        if steered:
            blocks.append({"type": "text", "text": steered})
        return [{"role": "user", "content": blocks}]


def _input(call: PendingCall) -> Any:
    """The tool input to send back: the parsed JSON object, else an empty object."""
    try:
        value = parse_json(call.arguments) if call.arguments.strip() else {}
    except StreamError:
        value = {}
    return value


class AnthropicStream:
    """Reads one Messages stream until ``message_stop``."""

    def __init__(self) -> None:
        self.complete = False
        self._step = Step()
        self._calls: dict[int, PendingCall] = {}

    def feed(self, event: SseEvent) -> str | None:
        data = parse_json(event.data)
        kind = data.get("type") or event.event
        if kind == "message_start":
            self._read_usage(data["message"].get("usage"))
        elif kind == "content_block_start":
            return self._start_block(int(data["index"]), data["content_block"])
        elif kind == "content_block_delta":
            return self._delta(int(data["index"]), data["delta"])
        elif kind == "message_delta":
            self._read_usage(data.get("usage"))
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            error = data.get("error") or {}
            raise PermanentError(
                f"{error.get('type', 'error')}: {error.get('message', 'the API reported an error')}"
            )
        return None

    def result(self) -> Step:
        if not self.complete:
            raise StreamError("the stream ended before the answer finished")
        self._step.calls = [self._calls[i] for i in sorted(self._calls)]
        return self._step

    def _start_block(self, index: int, block: dict[str, Any]) -> str | None:
        if block.get("type") == "tool_use":
            self._calls[index] = PendingCall(id=str(block["id"]), name=str(block["name"]))
            return None
        if block.get("type") == "text":
            return self._text(str(block.get("text") or ""))
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> str | None:
        if delta.get("type") == "text_delta":
            return self._text(str(delta["text"]))
        if delta.get("type") == "input_json_delta":
            self._calls[index].arguments += str(delta.get("partial_json") or "")
        return None

    def _text(self, text: str) -> str | None:
        if not text:
            return None
        self._step.text_parts.append(text)
        return text

    def _read_usage(self, usage: Any) -> None:
        """``message_start`` gives the input, ``message_delta`` the running output count."""
        if not isinstance(usage, dict):
            return
        counts = [usage[k] for k in _INPUT_KEYS if isinstance(usage.get(k), int)]
        if counts:
            self._step.input_tokens = sum(counts)
        if isinstance(usage.get("output_tokens"), int):
            self._step.output_tokens = int(usage["output_tokens"])
