"""The HTTP chat provider: stream, run tools, ask again, save — for every chat API.

Each API only differs in its *wire* (:class:`Wire`): its name and settings, the URL, headers
and body of a request, how its SSE stream reads (:class:`StreamParser`) and how messages are
shaped. The loop, the retries, the error reporting and the history are the same for all of
them, so there is one :class:`ChatProvider`, built from a wire
(``ChatProvider(OpenAIWire(config), …)``, ``ChatProvider(AnthropicWire(config), …)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from bot.llm import file_tools
from bot.llm.base import (
    Done,
    Failed,
    TextDelta,
    Tool,
    ToolCall,
    ToolResult,
    TurnEvent,
    TurnRequest,
    Usage,
)
from bot.llm.history import History, Message
from bot.llm.http_retry import RetryPolicy, Sleep, open_stream
from bot.sse import SseEvent, iter_lines, iter_sse
from bot.steer import SKIPPED
from config.errors import MusherError, PermanentError

MAX_TOOL_ROUNDS = 10

SYSTEM_PROMPT = (
    "You are musher, an assistant answering in a chat room. Each user message holds one or "
    "more room messages as `sender: text` lines; a <system-reminder> block, when present, "
    "lists pipeline events since your last answer. The tools are musher commands: calling "
    "one runs it exactly as if the sender had typed it, with the sender's permissions, and "
    "returns the command's reply. Use them to read or change the project's work items. "
    "Answer briefly in plain Markdown paragraphs."
)

NO_TOOLS_TEXT = "tools are not available in this conversation"


class StreamError(PermanentError):
    """The API's event stream could not be read (bad JSON, wrong shape, cut short)."""


@dataclass(slots=True)
class PendingCall:
    """A tool call as streamed: ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str = ""


@dataclass(slots=True)
class Step:
    """What one streamed model response produced."""

    text_parts: list[str] = field(default_factory=list)
    calls: list[PendingCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    id: str
    text: str
    is_error: bool = False


class StreamParser(Protocol):
    """Reads one response's SSE events (sans-IO). ``complete`` turns true at the end marker."""

    complete: bool

    def feed(self, event: SseEvent) -> str | None:
        """Consume one event; return text to show now. Raises StreamError or PermanentError."""
        ...

    def result(self) -> Step:
        """The finished step. Raises StreamError when the answer never finished."""
        ...


class ApiConfig(Protocol):
    """The settings every chat API's ``bot.toml`` table has (``[llm.openai]``, …)."""

    @property
    def api_key(self) -> SecretStr | None: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_retries(self) -> int: ...


def api_key(config: ApiConfig) -> str | None:
    """The configured key in clear (for a request header), or None when unset."""
    return config.api_key.get_secret_value() if config.api_key else None


class Wire(Protocol):
    """One API: its provider name, settings, and request and message shapes."""

    name: str
    url: str

    @property
    def config(self) -> ApiConfig: ...

    def headers(self) -> dict[str, str]: ...

    def body(self, messages: list[Message], tools: tuple[Tool, ...]) -> dict[str, Any]: ...

    def parser(self) -> StreamParser: ...

    def user_message(self, prompt: str) -> Message: ...

    def assistant_message(self, step: Step) -> Message: ...

    def tool_results(self, outcomes: list[ToolOutcome], steered: str | None) -> list[Message]:
        """The messages carrying ``outcomes`` back, then ``steered`` (room messages that
        arrived meanwhile, busy mode steer) as the user's words when there are any."""
        ...


def parse_json(data: str) -> dict[str, Any]:
    """Decode one ``data:`` payload, which must be a JSON object."""
    try:
        value = json.loads(data)
    except ValueError:
        raise StreamError(f"the stream sent invalid JSON: {data[:80]!r}") from None
    if not isinstance(value, dict):
        raise StreamError(f"the stream sent a non-object event: {data[:80]!r}")
    return value


class ChatProvider:
    """Answers turns with the HTTP chat API that ``wire`` speaks; named after the wire.

    ``client`` is used as given and left open by :meth:`aclose`; without one the provider
    makes (and closes) its own, with the wire's ``timeout_s``. Failed requests are retried
    up to the wire's ``max_retries``; ``sleep`` is where retry waits go (tests pass a fake).
    """

    def __init__(
        self,
        wire: Wire,
        history: History,
        history_size: int,
        client: httpx.AsyncClient | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        config = wire.config
        self.name = wire.name
        self._wire = wire
        self._history = history
        self._history_size = history_size
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s))
        self._policy = RetryPolicy(max_retries=config.max_retries, sleep=sleep)
        self._secret = api_key(config)

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        """Stream one turn: TextDelta…, ToolCall/ToolResult pairs, Usage, then Done or Failed.

        With ``request.steer``, what the room says meanwhile is taken at each tool boundary:
        before a tool call starts (it and the calls after it are then skipped, with a result
        saying so) or after the last one, and goes to the model with the tool results. A
        model that answers without tools takes nothing: the dispatcher runs a follow-up.

        Never raises except CancelledError. A failure ends with ``Failed("<name>: …")`` (the
        API key is never in it), preceded by Usage when tokens were spent. Only a turn that
        ended in Done is saved to history. Cancelling the iterating task closes the HTTP
        stream at once and saves nothing; setting ``cancel`` stops at the next event with
        ``Failed``.
        """
        spent = Step()
        try:
            async with contextlib.aclosing(self._turn(request, cancel, spent)) as events:
                async for event in events:
                    yield event
        except asyncio.CancelledError:
            raise
        except (MusherError, httpx.HTTPError) as exc:
            if spent.input_tokens or spent.output_tokens or spent.cost_usd:
                yield _usage(spent)
            yield Failed(self._redact(f"{self.name}: {_describe(exc)}"))

    async def _turn(
        self, request: TurnRequest, cancel: asyncio.Event, spent: Step
    ) -> AsyncGenerator[TurnEvent, None]:
        past = await self._history.load(request.session, self.name) if self._history_size else []
        turn = [self._wire.user_message(request.prompt)]
        for round_ in itertools.count():
            parser = self._wire.parser()
            tools = file_tools.tools_for(request)
            async for text in self._stream(past + turn, tools, parser, cancel):
                yield TextDelta(text)
            step = parser.result()
            _add(spent, step)
            turn.append(self._wire.assistant_message(step))
            if not step.calls:
                break
            if round_ >= MAX_TOOL_ROUNDS:
                raise PermanentError(
                    f"stopped after {MAX_TOOL_ROUNDS} rounds of tool calls without an answer"
                )
            outcomes: list[ToolOutcome] = []
            steered = None
            for call in step.calls:
                arguments = _arguments(call)
                yield ToolCall(call.id, call.name, arguments if isinstance(arguments, dict) else {})
                if steered is None and request.steer is not None:
                    steered = await request.steer.take()
                if steered is None:
                    outcome = await _run_tool(request, call, arguments)
                else:  # the room spoke: the model reads that before anything else runs
                    outcome = ToolOutcome(call.id, SKIPPED, is_error=True)
                outcomes.append(outcome)
                yield ToolResult(call.id, outcome.text)
            if steered is None and request.steer is not None:
                steered = await request.steer.take()
            turn.extend(self._wire.tool_results(outcomes, steered))
        if self._history_size:
            await self._history.append_turn(
                request.session, self.name, turn, keep_turns=self._history_size
            )
        yield _usage(spent)
        yield Done()

    async def _stream(
        self,
        messages: list[Message],
        tools: tuple[Tool, ...],
        parser: StreamParser,
        cancel: asyncio.Event,
    ) -> AsyncIterator[str]:
        """Yield the text of one response as it streams; ``parser`` keeps the rest."""
        if cancel.is_set():
            raise PermanentError("the turn was stopped")
        body = self._wire.body(messages, tools)
        headers = self._wire.headers()
        async with open_stream(
            self._client, self._wire.url, body=body, headers=headers, policy=self._policy
        ) as response:
            async for event in iter_sse(iter_lines(response.aiter_bytes())):
                try:
                    text = parser.feed(event)
                except (KeyError, TypeError, AttributeError, ValueError) as exc:
                    raise StreamError(f"the stream sent an unexpected event ({exc!r})") from None
                if text:
                    yield text
                if cancel.is_set():
                    raise PermanentError("the turn was stopped")
                if parser.complete:
                    break

    async def reset(self, session: str) -> None:
        """Forget this provider's history of ``session``. Idempotent."""
        await self._history.reset(session, self.name)

    async def aclose(self) -> None:
        """Close the HTTP client if this provider created it. Idempotent."""
        if self._owns_client:
            await self._client.aclose()

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text


def _describe(exc: Exception) -> str:
    if isinstance(exc, MusherError):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"the API did not answer in time ({type(exc).__name__})"
    return f"the connection failed ({type(exc).__name__})"


def _add(total: Step, step: Step) -> None:
    total.input_tokens += step.input_tokens
    total.output_tokens += step.output_tokens
    total.cost_usd += step.cost_usd


def _usage(spent: Step) -> Usage:
    return Usage(spent.input_tokens, spent.output_tokens, spent.cost_usd)


def _arguments(call: PendingCall) -> dict[str, Any] | str:
    """The call's arguments as a dict, or the reason they are unusable."""
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError:
        return f"the arguments of {call.name} are not valid JSON"
    if not isinstance(value, dict):
        return f"the arguments of {call.name} must be a JSON object"
    return value


async def _run_tool(
    request: TurnRequest, call: PendingCall, arguments: dict[str, Any] | str
) -> ToolOutcome:
    """Run one tool call; any failure becomes an error result for the model, not the turn."""
    if isinstance(arguments, str):
        return ToolOutcome(call.id, arguments, is_error=True)
    try:
        text = await file_tools.call(request, call.name, arguments)
        if text is None:
            if request.call_tool is None:
                return ToolOutcome(call.id, NO_TOOLS_TEXT, is_error=True)
            text = await request.call_tool(call.name, arguments)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return ToolOutcome(call.id, f"{call.name} failed: {exc}", is_error=True)
    return ToolOutcome(call.id, text or "(no output)")
