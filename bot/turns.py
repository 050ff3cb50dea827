"""Run one LLM turn for a batch: record it, stream the answer by paragraph, record the end.

Guarantees (D6, L3, L6): the turn is in the journal before the provider is called; every
paragraph is sent as soon as it is complete; a failure or timeout is said in the room; a
cancelled turn (``stop``, interrupt, shutdown) leaves its messages for the dispatcher to
settle and re-raises, so ``stop`` can drop them and a shutdown can park them for replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from bot.access import AccessPolicies
from bot.approvals import ApprovalDesk
from bot.audit_buffer import AuditBuffer
from bot.commands.registry import CommandContext, Registry
from bot.cost import CostBook
from bot.journal import Journal
from bot.llm.base import Done, Failed, Provider, TextDelta, TurnRequest, Usage
from bot.messages import QueuedText, Reply, Session
from bot.metrics import Metrics
from bot.outbox import Fence, Outbox
from bot.paragraphs import ParagraphBuffer
from bot.prompt import build_prompt
from bot.steer import Inboxes, TurnSteer
from bot.tools import batch_is_admin, tool_caller, tools_for
from config.errors import StoreError
from pipeline.crashpoints import crash_point
from pipeline.engine import Engine
from pipeline.leases import LeaseLost
from pipeline.storage import Conn
from pipeline.store import ProjectRecord

log = logging.getLogger("musher.turns")


class TurnTokens(Protocol):
    """What a turn's MCP tokens are revoked through (:class:`bot.mcp_bridge.McpBridge`)."""

    def release(self, session: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TurnParts:
    """What a turn uses: where it writes, what it calls, and who may do what."""

    journal: Journal
    outbox: Outbox
    provider: Provider
    registry: Registry  # the LLM's tools
    engine: Engine  # the room's project, for the working directory
    audit: AuditBuffer
    tokens: TurnTokens
    costs: CostBook
    metrics: Metrics
    access: AccessPolicies
    timeout_s: float
    data_dir: Path
    approvals: ApprovalDesk  # asks the room before the LLM uses its own tools (L7)
    inboxes: Inboxes | None = None  # busy mode steer: what the room says during a turn (D3)
    fence: Callable[[str], Fence] | None = None  # PostgreSQL: the room lease's guard (K2)


class TurnRunner:
    """Runs turns (``run`` is the dispatcher's ``run_turn``); ``stop`` ends one gracefully."""

    def __init__(self, parts: TurnParts) -> None:
        self.parts = parts
        self._cancels: dict[str, asyncio.Event] = {}  # the running turns' cancel events

    def stop(self, session: str) -> None:
        """Ask ``session``'s running turn (if any) to end at the provider's next event.

        The dispatcher's ``stop`` cancels the turn's task right after; setting the provider's
        ``cancel`` first lets it end its process or stream in its own orderly way (L6).
        """
        event = self._cancels.get(session)
        if event is not None:
            event.set()

    async def run(self, key: str, batch: Sequence[QueuedText]) -> None:
        """Answer ``batch`` in session ``key``. Cancelling leaves the messages unanswered."""
        p, session = self.parts, Session.of(key)
        ids = [i for m in batch for i in m.journal_ids]
        fence = p.fence(session) if p.fence is not None else None
        crash_point("before-turn-start")
        turn_id, record = await p.journal.start_turn_reading(
            session, ids, partial(p.engine.room_project_in, session=session), fence
        )
        crash_point("after-turn-start")
        started = time.monotonic()
        reminder = p.audit.drain(session)
        project, cwd = self._workspace(record)
        items: set[int] = set()  # the items the turn's tool calls acted on
        request = self._request(session, batch, reminder, cwd if cwd != p.data_dir else None, items)
        steer = self._steer(request, turn_id, ids)
        if steer is not None:
            request = dataclasses.replace(request, steer=steer)
        usage = Usage()
        await p.outbox.typing(session, True)
        outcome = "cancelled"
        cancel = self._cancels[session] = asyncio.Event()
        try:
            outcome, usage = await self._stream(request, turn_id, cancel, fence)
        finally:
            if steer is not None:
                steer.close()
            if self._cancels.get(session) is cancel:
                del self._cancels[session]
            p.tokens.release(session)
            await asyncio.shield(p.approvals.withdraw(session))
            if outcome == "cancelled":
                p.audit.restore(session, reminder)
            await asyncio.shield(p.outbox.typing(session, False))
            p.metrics.turns.inc(outcome)
            p.metrics.turn_seconds.observe(time.monotonic() - started)
        tokens = (usage.input_tokens, usage.output_tokens, usage.cost_usd)
        p.metrics.record_usage(*tokens)
        item = next(iter(items)) if len(items) == 1 else None  # L5: a turn on one item
        cost = p.costs.job((turn_id, session, project, item, p.provider.name, *tokens))
        await p.journal.finish_turn(turn_id, ids, outcome, also=_fenced(cost, fence))

    def _workspace(self, record: ProjectRecord | None) -> tuple[str | None, Path]:
        """The room's project and where the turn runs: the project's directory when it
        exists on this machine, else the data dir. (One ``stat``, on the loop: cheaper
        than the hop to a thread.)"""
        if record is None:
            return None, self.parts.data_dir
        path = Path(record.path)
        return record.name, path if path.is_dir() else self.parts.data_dir

    def _steer(self, request: TurnRequest, turn_id: int, ids: list[int]) -> TurnSteer | None:
        """The turn's side of its inbox (busy mode steer), or None.

        A message joins the turn only if its sender may use the tools the turn was given:
        in an admin's turn, a non-admin's message waits for the follow-up (L4).
        """
        p = self.parts
        inbox = p.inboxes.get(request.session) if p.inboxes is not None else None
        if inbox is None:
            return None
        policy = p.access.of(Session.of(request.session).transport)
        admin = batch_is_admin([policy.is_admin(m.sender) for m in request.batch])

        def accept(message: QueuedText) -> bool:
            return not admin or policy.is_admin(message.sender)

        return TurnSteer(inbox, p.journal, turn_id, ids, accept)

    def _request(
        self,
        session: Session,
        batch: Sequence[QueuedText],
        reminder: Sequence[str],
        project_dir: Path | None,
        items: set[int] | None = None,
    ) -> TurnRequest:
        """The turn's request; the LLM's own tools only ever work in a project's directory."""
        p = self.parts
        policy = p.access.of(session.transport)
        admin = batch_is_admin([policy.is_admin(m.sender) for m in batch])
        senders = sorted({m.sender for m in batch})
        ctx = CommandContext(session, ",".join(senders), admin, via="tool")
        own = project_dir if p.approvals.enabled else None
        return TurnRequest(
            session=session,
            prompt=build_prompt(batch, reminder),
            batch=tuple(batch),
            tools=tools_for(p.registry, admin),
            call_tool=tool_caller(p.registry, ctx, items),
            cwd=project_dir or p.data_dir,
            tool_access=p.approvals.access if own else "commands",
            ask_permission=p.approvals.asker(session, frozenset(senders), own) if own else None,
        )

    async def _stream(
        self, request: TurnRequest, turn_id: int, cancel: asyncio.Event, fence: Fence | None
    ) -> tuple[str, Usage]:
        p = self.parts
        session = request.session
        paragraphs = ParagraphBuffer()
        say = _Speaker(p.outbox, session, f"t{turn_id}", fence)
        sent_any = False
        usage = Usage()
        timeout = p.timeout_s
        try:
            async with (
                asyncio.timeout(timeout),
                contextlib.aclosing(p.provider.run(request, cancel)) as events,
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
        except (asyncio.CancelledError, StoreError, LeaseLost):
            raise  # a store failure is the dispatcher's to retry (bot.turn_retry); a lost
            # lease ends the turn at once (bot.room_leases)
        except Exception as exc:
            log.exception("turn failed in %s", session)
            await say(f"⚠️ The answer failed: {exc}")
            return "error", usage


class _Speaker:
    """Sends a turn's texts in order, each keyed ``t<turn>.<n>`` for idempotent delivery."""

    def __init__(self, outbox: Outbox, session: str, base: str, fence: Fence | None) -> None:
        self.outbox, self.session, self.base, self.count = outbox, session, base, 0
        self.fence = fence

    async def __call__(self, text: str) -> None:
        self.count += 1
        reply = Reply(text, key=f"{self.base}.{self.count}")
        await self.outbox.send(self.session, reply, self.fence)


async def _flush(say: _Speaker, paragraphs: ParagraphBuffer) -> bool:
    rest = paragraphs.flush()
    if rest:
        await say(rest)
    return bool(rest)


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        a.input_tokens + b.input_tokens, a.output_tokens + b.output_tokens, a.cost_usd + b.cost_usd
    )


def _fenced(job: Callable[[Conn], None], fence: Fence | None) -> Callable[[Conn], None]:
    """``job``, refused (the whole transaction) unless ``fence`` lets it through."""
    if fence is None:
        return job

    def fenced(conn: Conn) -> None:
        fence(conn)
        job(conn)

    return fenced
