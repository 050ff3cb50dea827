"""The bus across daemons (E1 on a shared PostgreSQL store, K2): what another daemon commits
reaches this daemon's subscribers, as its own commits do.

Every op append notifies the channel ``musher_ops`` (:data:`pipeline.store.OPS_CHANNEL`) with
its insertion id, inside the append's transaction, so PostgreSQL delivers it at commit and
never for a rolled-back write. The notification is only a wake-up: on each one, and after
every (re)connect of the LISTEN connection (NOTIFY is not durable), :class:`ClusterBus` reads
the op log after the last insertion id it has applied. Ids are handed out in commit order
(``bot.pg_sql``), so no op can appear later below that id: nothing is missed, nothing read
twice. It skips this node's own ops (the engine told its listeners at commit) and publishes
the events of the others' through :meth:`pipeline.engine.Engine.publish`, built by
:mod:`pipeline.op_events`, marked ``remote``: the bus subscribers, the board's streams and
every other engine listener see them in log order. It keeps this daemon's caches true too: a
``room.set`` of another daemon changes who follows what, a ``timer.add``/``timer.cancel``
reschedules the timers (every daemon schedules every timer; the firing claims the row, see
:mod:`pipeline.claims`). :func:`start_cluster` also marks the followers shared, so they
read the rooms that ran commands on other daemons from the journal
(:meth:`bot.followers.Followers.refresh`).

Who acts once: each op has one author, whose engine emitted it with ``remote`` off; chat
notifications and dependency warnings come from that daemon only (:mod:`bot.notifier`,
:mod:`pipeline.deps`), promotions and timers are written once by their guards.

``/metrics``: ``musher_bus_lag``, the ops between the newest insertion id this daemon has
heard of and the last one it applied. Runs only on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from bot.db import Db
from bot.followers import Followers
from bot.metrics import Metrics
from bot.pg_listen import PgListener, stop_task
from bot.pgdb import PgDatabase
from bot.subscribers import PipelineParts
from config.errors import StoreError
from pipeline.engine import Engine
from pipeline.envelope import SignedOp, ops_after
from pipeline.op_events import ITEM_KINDS, event_of
from pipeline.ops import KEEP, AddTimer, CancelTimer, SetRoom
from pipeline.storage import Storage
from pipeline.store import OPS_CHANNEL, AppliedOp, OpStore
from pipeline.timers import Timers

log = logging.getLogger("musher.cluster_bus")

BATCH = 500  # ops read per query while catching up
RETRY_S = 1.0  # after a failed catch-up (the store's health says why)


class ClusterBus:
    """Publishes other daemons' ops to this daemon's engine listeners, in log order.

    Guarantees: every op committed after :meth:`start` by another node is published once,
    in insertion order, including ops committed while the LISTEN connection was down; a
    failed read is retried (the applied id only advances past ops handled). Own ops are
    never published twice. An op that no longer decodes is logged and skipped.
    """

    def __init__(
        self,
        db: Storage,
        store: OpStore,
        engine: Engine,
        listener: PgListener,
        *,
        followers: Followers,
        timers: Timers,
    ) -> None:
        self._db = db
        self._store = store
        self._engine = engine
        self._listener = listener
        self._followers = followers
        self._timers = timers
        self._applied = 0
        self._heard = 0  # the newest insertion id seen in a notification or a read
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    @property
    def applied(self) -> int:
        """The last insertion id handled (published, skipped as own, or not an event)."""
        return self._applied

    def lag(self) -> int:
        """Ops behind the head as far as this daemon has heard."""
        return max(0, self._heard - self._applied)

    async def start(self) -> None:
        """Start from the op log's head now (what came before, the subscribers' reconcile
        covered), subscribe to ``musher_ops`` and catch up on every wake-up."""
        rows = await self._db.read("SELECT MAX(rowid) FROM ops")
        self._applied = self._heard = int(rows[0][0] or 0)
        self._listener.subscribe(OPS_CHANNEL, self._notified, self._connected)
        self._task = asyncio.create_task(self._run(), name="cluster-bus")

    async def aclose(self) -> None:
        """Stop reading; ops not yet published are left (a restart starts at the head)."""
        task, self._task = self._task, None
        await stop_task(task)

    async def catch_up(self) -> int:
        """Handle every op after the applied id; returns how many events were published.

        Raises:
            StoreError: the op log could not be read (nothing after the failure is applied).
        """
        published = 0
        while True:
            rows = await ops_after(self._db, self._applied, BATCH)
            for op in rows:
                assert op.rowid is not None
                self._heard = max(self._heard, op.rowid)
                if op.author != self._store.author:
                    published += await self._handle(op)
                self._applied = op.rowid
            if len(rows) < BATCH:
                self.published += published
                return published

    # --- internals ------------------------------------------------------------------------

    def _notified(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._heard = max(self._heard, int(payload))
        self._wake.set()

    def _connected(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except StoreError as err:  # the store's health says so too
                log.warning("reading other daemons' ops failed (%s); retrying", err)
            except Exception:
                log.exception("reading other daemons' ops failed; retrying")
            else:
                continue
            await asyncio.sleep(RETRY_S)
            self._wake.set()

    async def _handle(self, op: SignedOp) -> int:
        """Publish what another node's ``op`` changed; 1 if an event went out, else 0."""
        try:
            change = op.decode()
        except Exception:
            log.exception("op %s of %s does not decode; skipped", op.rowid, op.author[:12])
            return 0
        match change:
            case SetRoom(session=session, project=project) if project is not KEEP:
                project = project if isinstance(project, str) else self._engine.default_project
                if project is not None:  # a switch (or its clearing: the default project)
                    self._followers.note(session, project)
            case AddTimer() | CancelTimer():
                await self._timers.reconcile()
            case _ if op.kind in ITEM_KINDS and op.project is not None and op.item is not None:
                ops = await self._store.item_ops(op.project, op.item)
                earlier = [a for a in ops if a.rowid < (op.rowid or 0)]
                event = event_of(AppliedOp(op, change, ()), earlier)
                if event is not None:
                    self._engine.publish(event)
                    return 1
        return 0


@dataclass(frozen=True, slots=True)
class Cluster:
    """The daemon's LISTEN connection (other parts may subscribe to it) and its bus."""

    listener: PgListener
    bus: ClusterBus

    async def aclose(self) -> None:
        """Stop the bus, then close the connection."""
        await self.bus.aclose()
        await self.listener.aclose()


async def start_cluster(
    db: Db,
    store: OpStore,
    engine: Engine,
    pipeline: PipelineParts,
    metrics: Metrics,
    listener: PgListener | None = None,
) -> Cluster | None:
    """On PostgreSQL: start the LISTEN connection (``listener``, shared with the room
    hand-off, or a new one) and the cross-daemon bus, and add ``musher_bus_lag`` to
    ``/metrics``. None on SQLite, where nothing of this runs."""
    if not isinstance(db, PgDatabase):
        return None
    pipeline.followers.shared = True
    listener = listener or PgListener(db.url)
    bus = ClusterBus(db, store, engine, listener, followers=pipeline.followers,
                     timers=pipeline.timers)  # fmt: skip
    metrics.gauge("musher_bus_lag", "Ops committed by other daemons not yet on this bus",
                  bus.lag)  # fmt: skip
    await bus.start()
    await listener.start()
    return Cluster(listener, bus)
