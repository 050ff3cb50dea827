"""The ``openai`` wire of :class:`~bot.llm.chat.ChatProvider`: any OpenAI-compatible chat API (L2).

Works with hosted APIs and with Ollama, vLLM and llama.cpp server: ``base_url`` already ends
in ``/v1`` and the key is optional. Tool calls stream as ``delta.tool_calls[i]`` fragments;
the usage arrives in a last chunk thanks to ``stream_options.include_usage``.
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
from config.models import OpenAIConfig


class OpenAIWire:
    """Request and message shapes of ``POST {base_url}/chat/completions``."""

    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._model = config.model
        self._key = api_key(config)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def body(self, messages: list[Message], tools: tuple[Tool, ...]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, *messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in tools
            ]
        return body

    def parser(self) -> OpenAIStream:
        return OpenAIStream()

    def user_message(self, prompt: str) -> Message:
        return {"role": "user", "content": prompt}

    def assistant_message(self, step: Step) -> Message:
        message: Message = {"role": "assistant", "content": step.text or None}
        if step.calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in step.calls
            ]
        elif message["content"] is None:
            message["content"] = ""
        return message

    def tool_results(self, outcomes: list[ToolOutcome], steered: str | None) -> list[Message]:
        messages: list[Message] = [
            {"role": "tool", "tool_call_id": o.id, "content": o.text} for o in outcomes
        ]
        if steered:
            messages.append(self.user_message(steered))
        return messages


class OpenAIStream:
    """Reads ``chat.completion.chunk`` events until ``data: [DONE]``.

    A stream that ends after a ``finish_reason`` but without ``[DONE]`` still counts as
    finished (the answer is whole); one that ends before either is a :class:`StreamError`.
    """

    def __init__(self) -> None:
        self.complete = False
        self._finished = False
        self._step = Step()
        self._calls: dict[int, PendingCall] = {}

    def feed(self, event: SseEvent) -> str | None:
        if event.data.strip() == "[DONE]":
            self.complete = True
            return None
        chunk = parse_json(event.data)
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise PermanentError(f"the API reported an error: {message}")
        self._read_usage(chunk.get("usage"))
        choices = chunk.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or []:
            self._merge(fragment)
        if choice.get("finish_reason"):
            self._finished = True
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._step.text_parts.append(text)
            return text
        return None

    def result(self) -> Step:
        if not (self.complete or self._finished):
            raise StreamError("the stream ended before the answer finished")
        self._step.calls = [self._calls[i] for i in sorted(self._calls)]
        return self._step

    def _merge(self, fragment: dict[str, Any]) -> None:
        index = int(fragment.get("index", len(self._calls)))
        call = self._calls.setdefault(index, PendingCall(id=f"call_{index}", name=""))
        if fragment.get("id"):
            call.id = str(fragment["id"])
        function = fragment.get("function") or {}
        if function.get("name"):
            call.name += str(function["name"])
        if function.get("arguments"):
            call.arguments += str(function["arguments"])

    def _read_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._step.input_tokens = int(usage.get("prompt_tokens") or 0)
        self._step.output_tokens = int(usage.get("completion_tokens") or 0)
        cost = usage.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self._step.cost_usd = float(cost)
