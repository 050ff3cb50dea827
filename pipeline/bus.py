"""The event bus (E1): the engine's committed changes, fanned out to independent subscribers.

The bus is one engine listener (:meth:`Bus.connect`; connect it as soon as the engine exists,
before anything slow, lesson 1078). Each subscriber gets its own bounded queue and its own
named task, so a subscriber that raises, hangs or is slow never delays or loses events for
the others. When a subscriber's queue is full, further events for it are dropped and it is
marked *lagged*; it catches up through its own :meth:`Subscriber.reconcile`, which the bus
runs at start, every ``reconcile_interval_s``, and as soon as a lagged subscriber's queue
has drained. Nothing is ever re-published into the bus (lesson 1064).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.engine import Engine
from pipeline.events import PipelineEvent

log = logging.getLogger("musher.bus")

QUEUE_SIZE = 1024
STEP_TIMEOUT_S = 60.0  # one handle() or reconcile() longer than this is abandoned and logged
DRAIN_TIMEOUT_S = 1.0  # at aclose, how long each subscriber may take to finish its queue


class Subscriber(Protocol):
    """One independent consumer of pipeline events.

    ``handle`` is called with every event, in commit order, unless the subscriber lagged.
    ``reconcile`` must be idempotent and must never repeat a side effect that already
    happened (lesson 1066): it brings the subscriber's effects in line with the store's
    current state, which is how events missed while down or lagged are caught up.
    ``aclose`` releases what the subscriber holds; it runs once, after its task stopped.
    """

    @property
    def name(self) -> str: ...

    async def handle(self, event: PipelineEvent) -> None: ...

    async def reconcile(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class SubscriberStats:
    """What the bus knows of one subscriber: queued events, drops, failures, reconciles."""

    queued: int = 0
    dropped: int = 0  # events lost to a full queue since the start (caught up by reconcile)
    failures: int = 0  # handle() or reconcile() calls that raised or timed out
    reconciles: int = 0


@dataclass(slots=True)
class _Slot:
    subscriber: Subscriber
    queue: asyncio.Queue[PipelineEvent]
    stats: SubscriberStats = field(default_factory=SubscriberStats)
    lagged: bool = False
    task: asyncio.Task[None] | None = None


class Bus:
    """Fan-out of pipeline events to subscribers, each on its own task.

    Guarantees: each subscriber sees events in the order they were committed; an event is
    queued for every subscriber before :meth:`feed` returns (never awaiting anything);
    a subscriber whose queue is full loses events only for itself and is reconciled as
    soon as it has worked through its queue. Events fed before :meth:`start` wait in the
    queues (bounded likewise). Every task is named ``bus:<subscriber>`` and owned here.
    """

    def __init__(
        self,
        reconcile_interval_s: float = 30.0,
        *,
        queue_size: int = QUEUE_SIZE,
        step_timeout_s: float = STEP_TIMEOUT_S,
    ) -> None:
        self.reconcile_interval_s = reconcile_interval_s
        self._queue_size = queue_size
        self._step_timeout_s = step_timeout_s
        self._slots: list[_Slot] = []
        self._disconnect: list[Callable[[], None]] = []
        self._started = False
        self._closed = False

    def connect(self, engine: Engine) -> None:
        """Receive every change ``engine`` commits from now on (call before anything slow)."""
        self._disconnect.append(engine.subscribe(self.feed))

    def add(self, subscriber: Subscriber) -> None:
        """Register ``subscriber``; names must be unique. After :meth:`start` it starts now."""
        if any(s.subscriber.name == subscriber.name for s in self._slots):
            raise ValueError(f"a subscriber named {subscriber.name!r} is already on the bus")
        slot = _Slot(subscriber, asyncio.Queue(self._queue_size))
        self._slots.append(slot)
        if self._started and not self._closed:
            self._spawn(slot)

    def feed(self, event: PipelineEvent) -> None:
        """The engine listener: queue ``event`` for every subscriber, without waiting."""
        if self._closed:
            return
        for slot in self._slots:
            try:
                slot.queue.put_nowait(event)
            except asyncio.QueueFull:
                slot.stats.dropped += 1
                if not slot.lagged:
                    log.warning("subscriber %s lagged; it will reconcile", slot.subscriber.name)
                slot.lagged = True

    async def start(self) -> None:
        """Start every subscriber's task; each reconciles first, then handles its queue."""
        if self._started:
            return
        self._started = True
        for slot in self._slots:
            self._spawn(slot)

    def stats(self) -> dict[str, SubscriberStats]:
        """Per subscriber, in registration order: queue depth, drops, failures, reconciles."""
        out = {}
        for slot in self._slots:
            slot.stats.queued = slot.queue.qsize()
            out[slot.subscriber.name] = slot.stats
        return out

    async def aclose(self, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Stop: disconnect from the engine, then each subscriber in registration order.

        Each subscriber gets up to ``drain_timeout_s`` to finish its queued events; then its
        task is cancelled (a cancelled ``handle`` leaves whatever it had not done to the
        next start's reconcile) and its ``aclose`` runs. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        for disconnect in self._disconnect:
            disconnect()
        self._disconnect.clear()
        for slot in self._slots:
            await self._stop(slot, drain_timeout_s)

    # --- internals ------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        name = slot.subscriber.name
        slot.task = asyncio.create_task(self._run(slot), name=f"bus:{name}")

    async def _stop(self, slot: _Slot, drain_timeout_s: float) -> None:
        task = slot.task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout_s):
                    await slot.queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            async with asyncio.timeout(self._step_timeout_s):
                await slot.subscriber.aclose()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscriber %s failed to close", slot.subscriber.name)

    async def _run(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        await self._reconcile(slot)
        next_at = loop.time() + self.reconcile_interval_s
        while True:
            if loop.time() >= next_at or (slot.lagged and slot.queue.empty()):
                await self._reconcile(slot)
                next_at = loop.time() + self.reconcile_interval_s
                continue
            try:
                async with asyncio.timeout_at(next_at):
                    event = await slot.queue.get()
            except TimeoutError:
                continue
            try:
                await self._step(slot, "handle", functools.partial(slot.subscriber.handle, event))
            finally:
                slot.queue.task_done()

    async def _reconcile(self, slot: _Slot) -> None:
        slot.lagged = False  # events dropped from here on are after this reconcile's read
        slot.stats.reconciles += 1
        await self._step(slot, "reconcile", slot.subscriber.reconcile)

    async def _step(self, slot: _Slot, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run one handle/reconcile; a failure or timeout is logged and counted, never raised."""
        try:
            async with asyncio.timeout(self._step_timeout_s):
                await step()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            slot.stats.failures += 1
            log.error("subscriber %s: %s took over %.0f s", slot.subscriber.name, what,
                      self._step_timeout_s)  # fmt: skip
        except Exception:
            slot.stats.failures += 1
            log.exception("subscriber %s: %s failed", slot.subscriber.name, what)
