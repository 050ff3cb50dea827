"""Approvals in the room (L7): a tool use the room has not allowed becomes one question there.

:class:`ApprovalDesk` holds each room's pending questions, numbered from 1. A question is
answered by ``approve``/``deny`` (a sender of the asking batch or an admin), denied after
``permission_timeout_s`` on the injected clock, denied by ``stop``, and withdrawn when its
turn ends. ``approve always`` stores a rule for the room as a ``room.set`` op (read back
from the rooms table, S3); ``reset`` clears them. Every decision is a row of
``approvals`` (who, what, when), listed by the ``approvals`` command.

The desk never waits on a room's lane: a turn asking (on the dispatcher) and ``approve``
answering (on the lane) only meet at a future, so neither can block the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.clock import Clock, TimerHandle
from bot.db import Db
from bot.llm.base import AskPermission, Verdict
from bot.messages import Reply, Session
from bot.tool_uses import READ_ONLY, escape, matches, render, rule_for
from pipeline.model import Origin, SystemOrigin, UserOrigin
from pipeline.storage import Conn

log = logging.getLogger("musher.approvals")

SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    ts REAL NOT NULL,
    use TEXT NOT NULL,
    decision TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_session ON approvals (session, id);
"""

Send = Callable[[str, Reply], Awaitable[None]]


class RoomRules(Protocol):
    """Where a room's ``approve always`` rules live (:class:`pipeline.engine.Engine`)."""

    async def room_tools(self, session: str) -> tuple[str, ...]: ...

    async def set_room_tools(
        self, session: str, rules: tuple[str, ...], origin: Origin
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """One recorded decision: when, on what, which way, by whom and why."""

    ts: float
    use: str
    decision: str
    by: str
    reason: str


@dataclass(slots=True)
class Question:
    """A pending tool use: its number in the room, who may answer, and the answer's future."""

    number: int
    session: Session
    tool: str
    tool_input: dict[str, Any]
    shown: str
    senders: frozenset[str]
    answer: asyncio.Future[Verdict]
    timer: TimerHandle | None = None
    key: str = field(default_factory=lambda: f"a{uuid.uuid4().hex}")  # of its messages


class ApprovalLog:
    """The ``approvals`` table: every decision, per room, in order."""

    def __init__(self, db: Db, clock: Callable[[], float] = time.time) -> None:
        self._db, self._clock = db, clock

    async def record(self, session: str, use: str, decision: str, by: str, reason: str) -> None:
        """Append one decision (committed before this returns)."""
        row = (session, self._clock(), use, decision, by, reason)

        def job(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO approvals (session, ts, use, decision, by, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

        await self._db.write(job)

    async def recent(self, session: str, limit: int = 20) -> list[Decision]:
        """The room's last ``limit`` decisions, oldest first."""
        rows = await self._db.read(
            "SELECT ts, use, decision, by, reason FROM approvals WHERE session = ?"
            " ORDER BY id DESC LIMIT ?",
            (session, limit),
        )
        return [Decision(r[0], r[1], r[2], r[3], r[4]) for r in reversed(rows)]


class ApprovalDesk:
    """The rooms' pending questions and the decisions on them (see the module docstring)."""

    def __init__(
        self,
        *,
        access: str,
        send: Send,
        rules: RoomRules,
        log: ApprovalLog,
        clock: Clock,
        timeout_s: float,
    ) -> None:
        self.access = access  # [llm] tools: commands | ask | project
        self._send, self._rules, self._log = send, rules, log
        self._clock, self._timeout_s = clock, timeout_s
        self._pending: dict[Session, dict[int, Question]] = {}
        self._reports: set[asyncio.Task[None]] = set()  # timeout notices in flight

    @property
    def enabled(self) -> bool:
        return self.access != "commands"

    def asker(self, session: Session, senders: frozenset[str], root: Path) -> AskPermission:
        """The ``ask_permission`` of a turn of ``session`` by ``senders``, confined to ``root``."""

        async def ask(tool: str, tool_input: dict[str, Any]) -> Verdict:
            return await self.ask(session, senders, root, tool, tool_input)

        return ask

    async def ask(
        self,
        session: Session,
        senders: frozenset[str],
        root: Path,
        tool: str,
        tool_input: dict[str, Any],
    ) -> Verdict:
        """Decide one tool use: refuse an escape, allow by rule, else ask the room and wait.

        Cancelling the caller withdraws the question (recorded); nothing else is left behind.
        """
        shown = render(tool, tool_input, root)
        reason = escape(tool, tool_input, root)
        if reason is not None:
            await self._log.record(session, shown, "refused", "musher", reason)
            return Verdict(False, f"Refused without asking: {reason}.")
        if await self._allowed(session, tool, tool_input):
            await self._log.record(session, shown, "allowed by rule", "musher", "")
            return Verdict(True)
        question = self._open(session, senders, tool, tool_input, shown)
        try:
            await self._send(session, Reply(self._prompt(question), key=question.key))
            return await question.answer
        except asyncio.CancelledError:
            if self._close(question):
                await asyncio.shield(self._log.record(session, shown, "withdrawn", "musher", ""))
            raise
        except Exception as exc:
            log.exception("could not ask %s about %s", session, shown)
            self._close(question)
            await self._log.record(session, shown, "denied", "musher", f"could not ask: {exc}")
            return Verdict(False, "The question could not be posted in the room: denied.")

    async def answer(
        self,
        session: Session,
        number: int | None,
        who: str,
        admin: bool,
        verdict: Verdict,
        always: bool = False,
    ) -> str:
        """Apply ``who``'s answer to question ``number`` (the only one when None); the reply.

        An ``always`` rule is committed before the question is closed: if the write fails,
        the question is still waiting and the error reaches the room.
        """
        question, problem = self._find(session, number)
        if question is None:
            return problem
        if who not in question.senders and not admin:
            asked = " or ".join(sorted(question.senders))
            return f"Sorry, only {asked} (who asked) or an admin can answer #{question.number}."
        n, shown = question.number, question.shown
        if not verdict.allow:
            why = f": {verdict.message}" if verdict.message else ""
            self._settle(question, Verdict(False, f"Denied by {who}{why}."))
            await self._log.record(session, shown, "denied", who, verdict.message)
            return f"Denied #{n} ({shown})."
        if not always:
            self._settle(question, Verdict(True))
            await self._log.record(session, shown, "approved once", who, "")
            return f"Approved #{n} ({shown}) once."
        rule = rule_for(question.tool, question.tool_input)
        rules = await self._rules.room_tools(session)
        if rule not in rules:
            await self._rules.set_room_tools(session, (*rules, rule), _origin(session, who))
        self._settle(question, Verdict(True))
        await self._log.record(session, shown, "approved always", who, rule)
        return f"Approved #{n}; `{rule}` is now allowed in this room."

    async def deny_pending(self, session: Session, decision: str, message: str) -> int:
        """Deny every pending question of ``session`` (``stop``); how many there were."""
        questions = list(self._pending.get(session, {}).values())
        for question in questions:
            self._settle(question, Verdict(False, message))
        for question in questions:
            await self._log.record(session, question.shown, decision, "musher", "")
        return len(questions)

    async def withdraw(self, session: Session) -> None:
        """The turn of ``session`` ended: its unanswered questions are moot (recorded)."""
        await self.deny_pending(session, "withdrawn (the answer ended)", "The turn ended.")

    async def aclose(self) -> None:
        """Wait for the timeout notices being sent. Idempotent."""
        while self._reports:
            await asyncio.wait(set(self._reports))

    async def forget(self, session: Session) -> bool:
        """Drop the room's ``approve always`` rules (``reset``); whether there were any."""
        rules = await self._rules.room_tools(session)
        if not rules:
            return False
        await self._rules.set_room_tools(session, (), SystemOrigin("approvals", "reset"))
        await self._log.record(session, ", ".join(rules), "forgotten by reset", "musher", "")
        return True

    def pending(self, session: Session) -> list[Question]:
        return sorted(self._pending.get(session, {}).values(), key=lambda q: q.number)

    async def rules(self, session: Session) -> tuple[str, ...]:
        return await self._rules.room_tools(session)

    async def history(self, session: Session) -> list[Decision]:
        return await self._log.recent(session)

    async def _allowed(self, session: Session, tool: str, tool_input: Mapping[str, Any]) -> bool:
        if self.access == "project" and tool in READ_ONLY:
            return True
        return any(matches(r, tool, tool_input) for r in await self._rules.room_tools(session))

    def _open(
        self,
        session: Session,
        senders: frozenset[str],
        tool: str,
        tool_input: dict[str, Any],
        shown: str,
    ) -> Question:
        waiting = self._pending.setdefault(session, {})
        number = max(waiting, default=0) + 1
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        question = Question(number, session, tool, tool_input, shown, senders, future)
        waiting[number] = question
        question.timer = self._clock.call_at(
            self._clock.now() + self._timeout_s, lambda: self._expire(question)
        )
        return question

    def _close(self, question: Question) -> bool:
        """Take ``question`` off the desk; False if it already was."""
        waiting = self._pending.get(question.session, {})
        if waiting.get(question.number) is not question:
            return False
        del waiting[question.number]
        if not waiting:
            del self._pending[question.session]
        if question.timer is not None:
            question.timer.cancel()
        return True

    def _settle(self, question: Question, verdict: Verdict) -> None:
        """Take ``question`` off the desk and give its asker ``verdict``."""
        self._close(question)
        if not question.answer.done():
            question.answer.set_result(verdict)

    def _expire(self, question: Question) -> None:
        if self._pending.get(question.session, {}).get(question.number) is not question:
            return  # answered meanwhile
        self._settle(
            question, Verdict(False, f"No answer in the room within {self._timeout_s:g} s: denied.")
        )
        task = asyncio.get_running_loop().create_task(
            self._report_timeout(question), name=f"approval-timeout:{question.session}"
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report_timeout(self, question: Question) -> None:
        session = question.session
        text = f"⌛ #{question.number} ({question.shown}) got no answer and was denied."
        try:
            await self._log.record(session, question.shown, "timed out", "musher", "")
            await self._send(session, Reply(text, key=f"{question.key}.timeout"))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not report the timeout of #%d in %s", question.number, session)

    def _find(self, session: Session, number: int | None) -> tuple[Question | None, str]:
        waiting = self._pending.get(session, {})
        if not waiting:
            return None, "Nothing is waiting for approval in this room."
        listed = ", ".join(f"#{n}" for n in sorted(waiting))
        if number is None:
            if len(waiting) == 1:
                return next(iter(waiting.values())), ""
            return None, f"Several requests are waiting ({listed}): say which, e.g. `approve 2`."
        if number not in waiting:
            return None, f"No request #{number} is waiting. Waiting: {listed}."
        return waiting[number], ""

    def _prompt(self, question: Question) -> str:
        who = " and ".join(sorted(question.senders)) or "someone"
        n = question.number
        rule = rule_for(question.tool, question.tool_input)
        return (
            f"🔐 #{n}: the answer to {who} wants to use {question.shown}\n"
            f"Reply `approve {n}`, `approve {n} always` (allows `{rule}` in this room) or"
            f" `deny {n} [reason]`. No answer within {self._timeout_s:g} s denies it."
        )


def _origin(session: Session, who: str) -> Origin:
    return UserOrigin(session.transport, who, session.address)
