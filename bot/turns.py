"""Run one LLM turn for a batch: record it, stream the answer by paragraph, record the end.

Guarantees (D6, L3, L6): the turn is in the journal before the provider is called; every
paragraph is sent as soon as it is complete; a failure or timeout is said in the room; a
cancelled turn (``stop``, interrupt, shutdown) leaves its messages for the dispatcher to
settle and re-raises, so ``stop`` can drop them and a shutdown can park them for replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands.registry import CommandContext
from bot.errors import StoreError
from bot.llm.base import Done, Failed, TextDelta, TurnRequest, Usage
from bot.messages import QueuedText, Reply, split_session
from bot.paragraphs import ParagraphBuffer
from bot.prompt import build_prompt
from bot.tools import batch_is_admin, tool_caller, tools_for
from pipeline.crashpoints import crash_point
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from bot.outbox import Outbox
    from bot.services import Services

log = logging.getLogger("musher.turns")


class TurnRunner:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def run(self, session: str, batch: Sequence[QueuedText]) -> None:
        """Answer ``batch`` in ``session``. Cancelling leaves the messages unanswered."""
        s = self.services
        ids = [i for m in batch for i in m.journal_ids]
        crash_point("before-turn-start")
        turn_id = await s.journal.start_turn(session, ids)
        crash_point("after-turn-start")
        started = time.monotonic()
        reminder = s.audit.drain(session)
        project, cwd = await self._workspace(session)
        request = self._request(session, batch, reminder, cwd)
        usage = Usage()
        await s.outbox.typing(session, True)
        outcome = "cancelled"
        try:
            outcome, usage = await self._stream(request, turn_id)
        finally:
            s.mcp.release(session)
            if outcome == "cancelled":
                s.audit.restore(session, reminder)
            await asyncio.shield(s.outbox.typing(session, False))
            s.metrics.turns.inc(outcome)
            s.metrics.turn_seconds.observe(time.monotonic() - started)
        tokens = (usage.input_tokens, usage.output_tokens, usage.cost_usd)
        s.metrics.record_usage(*tokens)
        cost = s.costs.job((turn_id, session, project, None, s.provider.name, *tokens))
        await s.journal.finish_turn(turn_id, ids, outcome, also=cost)

    async def _workspace(self, session: str) -> tuple[str | None, Path]:
        """The room's project and where the turn runs: the project's directory when it
        exists on this machine, else the data dir."""
        s = self.services
        try:
            record = await s.engine.project(await s.engine.room_project(session))
        except PipelineError:
            return None, s.data_dir
        path = Path(record.path)
        return record.name, path if await asyncio.to_thread(path.is_dir) else s.data_dir

    def _request(
        self, session: str, batch: Sequence[QueuedText], reminder: Sequence[str], cwd: Path
    ) -> TurnRequest:
        s = self.services
        policy = s.policy(split_session(session)[0])
        admin = batch_is_admin([policy.is_admin(m.sender) for m in batch])
        senders = sorted({m.sender for m in batch})
        ctx = CommandContext(session, ",".join(senders), admin, s, via="tool")
        return TurnRequest(
            session=session,
            prompt=build_prompt(batch, reminder),
            batch=tuple(batch),
            tools=tools_for(s.registry, admin),
            call_tool=tool_caller(s.registry, ctx),
            cwd=cwd,
        )

    async def _stream(self, request: TurnRequest, turn_id: int) -> tuple[str, Usage]:
        s = self.services
        session = request.session
        paragraphs = ParagraphBuffer()
        say = _Speaker(s.outbox, session, f"t{turn_id}")
        sent_any = False
        usage = Usage()
        timeout = s.settings.llm.turn_timeout_s
        try:
            async with (
                asyncio.timeout(timeout),
                contextlib.aclosing(s.provider.run(request, asyncio.Event())) as events,
            ):
                async for event in events:
                    match event:
                        case TextDelta(text):
                            for paragraph in paragraphs.feed(text):
                                await say(paragraph)
                                sent_any = True
                        case Done(text):
                            sent_any = await _flush(say, paragraphs) or sent_any
                            if text and not sent_any:
                                await say(text)
                        case Failed(message):
                            await _flush(say, paragraphs)
                            await say(f"⚠️ {message}")
                            return "error", usage
                        case Usage():
                            usage = _add(usage, event)
            await _flush(say, paragraphs)
            return "ok", usage
        except TimeoutError:
            await say(f"⚠️ The answer took longer than {timeout:g} s and was stopped.")
            return "timeout", usage
        except (asyncio.CancelledError, StoreError):
            raise  # a store failure is the dispatcher's to retry (bot.turn_retry)
        except Exception as exc:
            log.exception("turn failed in %s", session)
            await say(f"⚠️ The answer failed: {exc}")
            return "error", usage


class _Speaker:
    """Sends a turn's texts in order, each keyed ``t<turn>.<n>`` for idempotent delivery."""

    def __init__(self, outbox: Outbox, session: str, base: str) -> None:
        self.outbox, self.session, self.base, self.count = outbox, session, base, 0

    async def __call__(self, text: str) -> None:
        self.count += 1
        await self.outbox.send(self.session, Reply(text, key=f"{self.base}.{self.count}"))


async def _flush(say: _Speaker, paragraphs: ParagraphBuffer) -> bool:
    rest = paragraphs.flush()
    if rest:
        await say(rest)
    return bool(rest)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens, a.cost_usd + b.cost_usd
    )
