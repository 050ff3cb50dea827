"""Timers (T1): rows in the store, fired in-process by APScheduler, each at most once.

A timer is a ``timers`` row written by a ``timer.add`` op; APScheduler 3's
``AsyncIOScheduler`` is only the trigger, rebuilt from the rows at every start and
reconcile, so nothing about a timer lives outside the store. A timer's action moves its
item to one stage (``start`` = ``move coding``). Timers die with their item: the store
deletes the rows when the item is purged or finishes, and this subscriber drops the
scheduler jobs on those events (a firing timer re-reads its row anyway).

Firing re-reads the item (lessons 501, 510, 514): when it is gone, finished or already
where the timer would put it, nothing moves; the row is removed by a ``timer.cancel`` op
and the room is told. Otherwise the ``timer.cancel`` and the move are written in one
transaction (origin ``SystemOrigin("timers", <id>)``), so a timer moves its item at most
once, even across a crash. On several daemons sharing one PostgreSQL store (K2) each
schedules every timer, and the firing transaction first claims the row
(:func:`pipeline.claims.claim_timer`, ``FOR UPDATE SKIP LOCKED``): one daemon moves the
item, removes the row and tells the room; the others find no row and do nothing. A timer
missed while the daemon was down fires at startup if it is at most ``grace_s`` late; a later
one is reported and removed without moving anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from pipeline.claims import TimerGone, claim_timer
from pipeline.crashpoints import crash_point
from pipeline.engine import Engine
from pipeline.errors import PipelineError
from pipeline.events import ItemChanged, ItemPurged, PipelineEvent
from pipeline.model import Origin, SystemOrigin, is_finished, stage_name
from pipeline.ops import AddTimer, CancelTimer
from pipeline.store import StoreWriteError, TimerRecord
from pipeline.timespec import format_span, format_when, zone
from pipeline.transitions import MOVE_TARGETS, Move

log = logging.getLogger("musher.timers")

Report = Callable[[TimerRecord, str], None]
"""``report(timer, text)``: tell the timer's room (or the project's rooms) what happened."""


class Outcome(StrEnum):
    """What one :meth:`Timers.fire` did."""

    MOVED = "moved"  # the item moved; the row is gone (same transaction)
    SKIPPED = "skipped"  # nothing to do (item gone, finished, already there, refused)
    MISSED = "missed"  # later than the grace period; reported and removed
    GONE = "gone"  # no such row any more (cancelled, or fired already): nothing happened


def target_of(record: TimerRecord) -> str | None:
    """The stage ``record`` moves its item to, or None for an action this build can't run."""
    target = record.action.get("move")
    return target if isinstance(target, str) and target in MOVE_TARGETS else None


class Timers:
    """The timer service and the bus subscriber ``timers``.

    Guarantees: a row fires at most once (its removal commits with its move, and fires are
    serialised); :meth:`reconcile` is idempotent — it schedules rows that have no job,
    drops jobs whose row is gone and fires (or reports) rows already due.
    """

    name = "timers"

    def __init__(self, engine: Engine, *, grace_s: float = 600.0, report: Report) -> None:
        self._engine = engine
        self._store = engine.store
        self._grace_s = grace_s
        self._report = report
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._jobs: dict[str, tuple[str, int | None]] = {}  # timer id → (project, item)
        self._fire_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Outcome]] = set()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler on the running loop (idempotent); jobs added before wait."""
        if not self._scheduler.running:
            self._scheduler.start()

    async def aclose(self) -> None:
        """Stop the scheduler and cancel firings in flight (a cancelled firing either
        committed its move and removal together or left the row for the next start)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._jobs.clear()

    # --- commands -------------------------------------------------------------------------

    async def add(
        self, project: str, number: int, fire_at: float, target: str, origin: Origin
    ) -> TimerRecord:
        """Write a timer for item ``number`` and schedule it; return its row.

        Raises:
            ItemNotFound: no such item. PipelineError: a finished item, a bad target.
        """
        if target not in MOVE_TARGETS:
            raise PipelineError(f"unknown stage {target!r}; valid: {', '.join(MOVE_TARGETS)}")
        await self._engine.lookup(project, number)
        taken = {record.id for record in await self._store.timers()}
        timer_id = _new_id(taken)
        action = {"move": target}
        applied = await self._store.append(AddTimer(timer_id, project, number, fire_at, action),
                                           origin)  # fmt: skip
        record = TimerRecord(timer_id, project, number, float(fire_at), action, origin,
                             applied.op.ts)  # fmt: skip
        self._schedule(record)
        return record

    async def cancel(self, timer_id: str, origin: Origin) -> TimerRecord | None:
        """Remove the timer (one ``timer.cancel`` op) and its job; None if there is none.

        Idempotent: a second cancel of the same id writes nothing and returns None.
        """
        record = await self.get(timer_id)
        if record is None:
            return None
        await self._store.append(CancelTimer(record.id, record.project), origin)
        self._unschedule(record.id)
        return record

    async def get(self, timer_id: str) -> TimerRecord | None:
        """The pending timer ``timer_id``, or None."""
        for record in await self._store.timers():
            if record.id == timer_id:
                return record
        return None

    async def pending(self, project: str | None = None) -> list[TimerRecord]:
        """Pending timers of ``project`` (or all), soonest first."""
        return await self._store.timers(project)

    def scheduled(self) -> set[str]:
        """The ids that have a scheduler job now."""
        return set(self._jobs)

    # --- firing ---------------------------------------------------------------------------

    async def fire(self, timer_id: str) -> Outcome:
        """Run timer ``timer_id`` now, re-validating everything from the store first.

        Guarantees: runs one at a time; a row that is gone does nothing; every other
        outcome removes the row (with the move in one transaction when the item moves).

        Raises:
            StoreWriteError: the write failed; the row is still there and the next
                reconcile tries again (within the grace period).
        """
        async with self._fire_lock:
            self._unschedule(timer_id)
            record = await self.get(timer_id)
            if record is None:
                return Outcome.GONE
            late = self._engine.now() - record.fire_at
            if late > self._grace_s:
                when = format_when(record.fire_at, await self._zone(record.project))
                text = (f"⏰ Timer {record.id} missed: it was due {when}, {format_span(late)}"
                        f" ago, while musher was down. Removed; nothing was moved.")  # fmt: skip
                return Outcome.MISSED if await self._drop(record, "missed", text) else Outcome.GONE
            return await self._run(record)

    async def _run(self, record: TimerRecord) -> Outcome:
        target = target_of(record)
        refusal = await self._refusal(record, target)
        if refusal is None and target is not None and record.item is not None:
            origin = SystemOrigin("timers", record.id)
            cancel = CancelTimer(record.id, record.project)
            crash_point("timer-firing")
            check = functools.partial(claim_timer, timer_id=record.id)
            try:
                await self._engine.apply(
                    record.project, record.item, Move(target), origin, also=[cancel], check=check
                )
                return Outcome.MOVED
            except StoreWriteError:
                raise  # nothing was written: the row stays for the next try
            except TimerGone:  # fired (or firing) on another daemon, or cancelled meanwhile
                return Outcome.GONE
            except PipelineError as err:  # the engine refused the move (e.g. frozen item)
                refusal = str(err).rstrip(".")
        text = f"⏰ Timer {record.id} did nothing: {refusal}. Removed."
        return Outcome.SKIPPED if await self._drop(record, "skipped", text) else Outcome.GONE

    async def _refusal(self, record: TimerRecord, target: str | None) -> str | None:
        """Why the timer must not move its item now, or None when it may."""
        if target is None or record.item is None:
            return f"its action {record.action} is not one this musher can run"
        item = await self._engine.find(record.project, record.item)
        if item is None:
            return f"#{record.item} is gone from {record.project}"
        if is_finished(item.stage):
            return f"{item.label} is {stage_name(item.stage)}"
        if stage_name(item.stage) == target:
            return f"{item.label} is already in {target}"
        return None

    async def _drop(self, record: TimerRecord, why: str, text: str) -> bool:
        """Remove the row and report ``text``; False (and no report) when the row was gone
        or another daemon held it."""
        origin = SystemOrigin("timers", f"{record.id} {why}")
        check = functools.partial(claim_timer, timer_id=record.id)
        try:
            await self._store.append_many([CancelTimer(record.id, record.project)], origin, check)
        except TimerGone:
            return False
        self._report(record, text)
        return True

    async def _due(self, timer_id: str) -> None:
        """The scheduler's job: fire on a named task of ours; log what goes wrong."""
        task = asyncio.create_task(self.fire(timer_id), name=f"timer:{timer_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            outcome = await task
            log.info("timer %s: %s", timer_id, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer %s failed; the next reconcile retries it", timer_id)

    # --- bus subscriber -------------------------------------------------------------------

    async def handle(self, event: PipelineEvent) -> None:
        """Drop the jobs of an item that was purged or finished (the store dropped the rows)."""
        if isinstance(event, ItemPurged) or (
            isinstance(event, ItemChanged) and is_finished(event.to_stage)
        ):
            for timer_id, key in list(self._jobs.items()):
                if key == (event.project, event.number):
                    self._unschedule(timer_id)

    async def reconcile(self) -> None:
        """Make the scheduler match the rows: add missing jobs, drop stale ones, fire due ones.

        Idempotent: a timer that fired is gone from the rows, so it never fires twice.
        """
        records = await self._store.timers()
        live = {record.id for record in records}
        for timer_id in list(self._jobs):
            if timer_id not in live:
                self._unschedule(timer_id)
        now = self._engine.now()
        for record in records:
            if record.id in self._jobs:
                continue
            if record.fire_at <= now:
                try:
                    outcome = await self.fire(record.id)
                    log.info("timer %s, %.0f s late at reconcile: %s", record.id,
                             now - record.fire_at, outcome)  # fmt: skip
                except PipelineError:
                    log.exception("timer %s failed; the next reconcile retries it", record.id)
            else:
                self._schedule(record)

    # --- helpers --------------------------------------------------------------------------

    def _schedule(self, record: TimerRecord) -> None:
        run_date = datetime.fromtimestamp(record.fire_at, UTC)
        self._scheduler.add_job(
            self._due, "date", run_date=run_date, args=[record.id], id=record.id,
            replace_existing=True,
        )  # fmt: skip
        self._jobs[record.id] = (record.project, record.item)

    def _unschedule(self, timer_id: str) -> None:
        if self._jobs.pop(timer_id, None) is not None:
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(timer_id)

    async def _zone(self, project: str) -> ZoneInfo:
        try:
            return zone((await self._engine.project(project)).timezone)
        except PipelineError:
            return zone("UTC")


def _new_id(taken: set[str]) -> str:
    """A short timer id not in ``taken``: ``t`` and six hex digits."""
    while (timer_id := f"t{secrets.token_hex(3)}") in taken:
        pass
    return timer_id
