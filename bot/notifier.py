"""Pipeline notifications in chat (E2) and audit lines for the next LLM turn (D4).

:class:`Notifier` (bus subscriber ``notifier``) tells every room following a project about
each change: ``#12 Login page: coding → qa (by alice)``. Lines for one room are collected
for ``window_s`` from the first one and then sent as one message, so a room gets at most
one notification message per window however many changes land (a storm is summarised past
``max_lines``). The room whose own command caused a change is not notified of it: the
command's reply already said so. Other parts of the daemon (dependency warnings, timer
reports) post through :meth:`Notifier.announce` and :meth:`Notifier.post`, merged likewise.

Several daemons on one store (K2): a change is notified once cluster-wide, by the daemon
that committed it. Each op is committed by exactly one daemon, whose engine emits its event
exactly once with ``remote`` off; the same change reaches every other daemon's bus only as
a ``remote`` event (:mod:`bot.cluster_bus`), which this notifier ignores. So no claim row
and no lease look-up is needed, and a room is never told twice however the room leases move.
The committing daemon is where the room's command or turn ran (its lease holder), or where a
timer fired or a promotion was written (each once, :mod:`pipeline.claims`); it knows the
room follows from its own commands, or from the shared journal (:meth:`Followers.refresh`
reads the commands journalled since, before each line). Its message goes out through its
outbox, like a turn's. A build node (``musher agent``) commits ops but has no rooms: its ops
are told by the holder of ``leader:notifier`` instead (:mod:`bot.announcer`).

:class:`AuditFeeder` (bus subscriber ``audit``) pushes one ``audit …`` line per change to
the audit buffer of every following room, the causing room included: command text never
reaches the LLM (C1), so this is how the room's next turn learns of it, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.audit_buffer import AuditBuffer, audit_line
from bot.clock import Clock, TimerHandle
from bot.followers import Followers
from bot.messages import Reply, session_key
from pipeline.events import ItemChanged, ItemCreated, ItemPurged, PipelineEvent
from pipeline.model import AgentOrigin, Origin, SystemOrigin, UserOrigin, stage_name

log = logging.getLogger("musher.notifier")

MAX_LINES = 20
Send = Callable[[str, Reply], Awaitable[object]]


def by_whom(origin: Origin) -> str:
    """Who a notification credits: ``alice``, ``agent coder-1``, ``timers: t3fa21c``."""
    match origin:
        case UserOrigin(user=user):
            return user
        case AgentOrigin(name=name):
            return f"agent {name}"
        case SystemOrigin(system=system, reason=reason):
            return f"{system}: {reason}"
        case _:
            return origin.describe()


def _actor(origin: Origin) -> str:
    """The ``by=`` of an audit line: the user, the agent's name, or the daemon part."""
    match origin:
        case UserOrigin(user=who) | AgentOrigin(name=who) | SystemOrigin(system=who):
            return who
        case _:
            return origin.describe()


def origin_session(origin: Origin) -> str | None:
    """The session a person's change came from, or None for agents and the daemon."""
    if isinstance(origin, UserOrigin):
        return session_key(origin.transport, origin.room)
    return None


def merged(lines: list[str]) -> str:
    """One notification message of ``lines``, a storm summarised past :data:`MAX_LINES`."""
    if len(lines) > MAX_LINES:
        more = len(lines) - MAX_LINES + 1
        lines = [*lines[: MAX_LINES - 1], f"… and {more} more changes: see `status`."]
    return "\n".join(lines)


def change_of(event: PipelineEvent) -> tuple[str, str] | None:
    """``(from, to)`` stage words of an event, or None when it changed no stage."""
    match event:
        case ItemCreated(kind=kind):
            return "new", kind.value
        case ItemChanged(from_stage=before, to_stage=after) if before != after:
            return stage_name(before), stage_name(after)
        case ItemPurged():
            return "-", "purged"
        case _:
            return None


def notice_line(event: PipelineEvent) -> str | None:
    """``#12 Login page: coding → qa (by alice)``, or None for a dependency-only change."""
    change = change_of(event)
    if change is None:
        return None
    before, after = change
    what = f"new {after}" if before == "new" else after if before == "-" else f"{before} → {after}"
    return f"#{event.number} {event.title}: {what} (by {by_whom(event.origin)})"


class Notifier:
    """Merged, rate-limited notifications per room; the bus subscriber ``notifier``.

    Guarantees: lines reach a room in the order they were posted; a room gets at most one
    message per ``window_s``; at most one send per room is in flight. Lines still waiting
    at :meth:`aclose` are dropped (the board and ``status`` show the state).
    """

    name = "notifier"

    def __init__(
        self, followers: Followers, send: Send, clock: Clock, *, window_s: float = 1.0
    ) -> None:
        self._followers = followers
        self._send = send
        self._clock = clock
        self._window_s = window_s
        self._pending: dict[str, list[str]] = {}
        self._due: dict[str, TimerHandle] = {}
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def handle(self, event: PipelineEvent) -> None:
        """Queue the event's line for every following room but the one that caused it;
        nothing for another daemon's change (that daemon tells the rooms)."""
        line = notice_line(event)
        if line is not None and not event.remote:
            await self._followers.refresh()
            self.announce(event.project, line, exclude=origin_session(event.origin))

    async def reconcile(self) -> None:
        """Nothing to catch up: a notification missed while down is not worth repeating."""

    def announce(self, project: str, line: str, exclude: str | None = None) -> None:
        """Queue ``line`` for every room following ``project`` (but ``exclude``)."""
        for session in self._followers.following(project):
            if session != exclude:
                self.post(session, line)

    def post(self, session: str, line: str) -> None:
        """Queue ``line`` for ``session``; it goes out with the room's next merged message."""
        if self._closed:
            return
        self._pending.setdefault(session, []).append(line)
        self._arm(session, self._window_s)

    async def aclose(self) -> None:
        """Drop waiting lines, cancel sends in flight (a chunk may or may not have gone)."""
        self._closed = True
        for handle in self._due.values():
            handle.cancel()
        self._due.clear()
        self._pending.clear()
        tasks = list(self._sending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _arm(self, session: str, delay: float) -> None:
        if session not in self._due:
            at = self._clock.now() + delay
            self._due[session] = self._clock.call_at(at, lambda: self._flush(session))

    def _flush(self, session: str) -> None:
        del self._due[session]
        if session in self._sending:  # the previous message is still going out: wait
            self._arm(session, self._window_s)
            return
        lines = self._pending.pop(session, [])
        if lines:
            task = asyncio.create_task(self._deliver(session, lines), name=f"notify:{session}")
            self._sending[session] = task

    async def _deliver(self, session: str, lines: list[str]) -> None:
        try:
            await self._send(session, Reply(merged(lines), notice=True))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notifying %s failed", session)
        finally:
            del self._sending[session]


class AuditFeeder:
    """The bus subscriber ``audit``: one audit line per change for each following room.

    Guarantees: a room's lines are in commit order; each line is given to one LLM turn
    (the buffer drains once); a dependency-only change writes no line.
    """

    name = "audit"

    def __init__(self, followers: Followers, buffer: AuditBuffer) -> None:
        self._followers = followers
        self._buffer = buffer

    async def handle(self, event: PipelineEvent) -> None:
        """Push the event's ``audit ts=… project=… item=… from=… to=… by=…`` line."""
        change = change_of(event)
        if change is None:
            return
        line = audit_line(event.ts, event.project, event.number, *change, _actor(event.origin))
        await self._followers.refresh()
        for session in self._followers.following(event.project):
            self._buffer.push(session, line)

    async def reconcile(self) -> None:
        """Nothing to catch up: the LLM reads the board through its tools."""

    async def aclose(self) -> None:
        """Nothing to release."""
