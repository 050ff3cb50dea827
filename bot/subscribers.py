"""The event bus and its subscribers, wired over one engine (E1, E2, D4, P4, T1).

Subscribers, in bus order (which is also the order they stop in): ``notifier`` (chat
notifications), ``audit`` (lines for the next LLM turn), ``deps`` (dependency promotion),
``timers``. Others (the web board, agents) add theirs with ``bus.add``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.audit_buffer import AuditBuffer
from bot.clock import Clock
from bot.followers import Followers
from bot.journal import Journal
from bot.metrics import Metrics
from bot.notifier import AuditFeeder, Notifier, origin_session
from bot.outbox import Outbox
from config.models import Settings
from pipeline.bus import Bus
from pipeline.deps import DependencyPromoter
from pipeline.engine import Engine
from pipeline.store import TimerRecord
from pipeline.timers import Timers


@dataclass(frozen=True, slots=True)
class PipelineParts:
    """What :func:`build_pipeline` made; the daemon starts and stops them."""

    bus: Bus
    followers: Followers
    notifier: Notifier
    timers: Timers


def build_pipeline(
    settings: Settings,
    engine: Engine,
    journal: Journal,
    outbox: Outbox,
    audit: AuditBuffer,
    clock: Clock,
) -> PipelineParts:
    """Connect a bus to ``engine`` at once (lesson 1078) and register the subscribers.

    Nothing runs yet: :meth:`Timers.start` and :meth:`Bus.start` do that; events committed
    before then wait in the subscribers' queues.
    """
    d = settings.daemon
    bus = Bus(reconcile_interval_s=d.reconcile_interval_s)
    bus.connect(engine)
    followers = Followers(engine, journal)
    notifier = Notifier(followers, outbox.send, clock, window_s=d.notify_window_s)

    def report(timer: TimerRecord, text: str) -> None:
        session = origin_session(timer.origin)
        if session is not None:
            notifier.post(session, text)
        else:
            notifier.announce(timer.project, text)

    timers = Timers(engine, grace_s=d.misfire_grace_s, report=report)
    bus.add(notifier)
    bus.add(AuditFeeder(followers, audit))
    bus.add(DependencyPromoter(engine, notifier.announce))
    bus.add(timers)
    return PipelineParts(bus, followers, notifier, timers)


def bus_gauges(metrics: Metrics, bus: Bus) -> None:
    """``musher_bus_queued`` and ``musher_bus_dropped`` on ``/metrics`` (all subscribers)."""
    metrics.gauge("musher_bus_queued", "Pipeline events waiting for subscribers",
                  lambda: sum(s.queued for s in bus.stats().values()))  # fmt: skip
    metrics.gauge("musher_bus_dropped", "Events dropped by lagging subscribers (reconciled)",
                  lambda: sum(s.dropped for s in bus.stats().values()))  # fmt: skip
