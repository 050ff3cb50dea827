"""Rooms are told of build-node work (K3, issue 15), once cluster-wide.

A chat notification goes out from the daemon that committed the op (:mod:`bot.notifier`);
a build node (``musher agent``) commits ops but has no rooms. So on PostgreSQL one daemon,
the holder of the leader lease ``leader:notifier`` (:meth:`bot.leaders.Leaders.lead`), reads
the op log after a stored position and tells the following rooms what the ops of agent
nodes (role ``agent`` in ``nodes``) did:

* a claim: ``#4 agent coder: started on agent:b``; a takeover of a lapsed claim:
  ``#4: agent:b took over from agent:a (silent for 120 s); continuing from its pushed
  commits`` (a retry's claim says nothing: the failure before it was told; nor does a
  node's resuming of its own parked run);
* a notable line the node carried in ``agent.progress`` (``note``: a tool use, a rate
  limit; at most one per 20 s, as the local pool tells them);
* the end: ``gates passed`` (coder) or ``review finished`` (QA), ``attempt 2 failed: gate
  `pytest` failed``, ``rate-limited until 14:05 UTC``;
* the item changes it wrote, as the notifier words them: ``#4 Login: coding → merge (by
  agent coder)``, ``coding → blocked (by agents: out of retries)``.

An item a build node moved to Merge is queued on this daemon's merge queue at once (with
``[agents] merge_on = "daemon"``; other daemons find it at their next reconcile), so it is
merged without waiting for ``reconcile_interval_s``.

Exactly once: the position (``transport_state`` row ``announce``/``cursor``, the last op
insertion id looked at) and a per-room position (``announce``/``room:<session>``) are
written in the same transaction as the room log line of the message that told them, fenced
by the lease; the position moves past ops that told nothing only under the lease too. A new
holder (failover, restart) starts from the stored positions, so nothing is told twice or
lost, but for a message whose send went out and whose log write did not (a crash between
the two, as for any reply). The lease is tried only once a build node has registered, so
a cluster without build nodes runs none of this; the first holder ever starts with the ops
of the last minute (a build node's first claims), not older history. Lines of one
pass reach a room as one message (merged as the notifier's are); passes run when an op is
committed (LISTEN ``musher_ops``, after ``window_s``) or every ``POLL_S``.

Runs only on PostgreSQL; on SQLite there are no build nodes and nothing of this starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bot.db import Db
from bot.followers import Followers
from bot.journal import BotLine, Journal, LogEntry
from bot.kv import TransportState, put_in
from bot.leaders import Leaders
from bot.messages import Reply
from bot.notifier import merged, notice_line
from bot.outbox import Outbox
from bot.pg_listen import PgListener, stop_task
from bot.transport import Sink
from config.errors import MusherError
from config.models import Settings
from pipeline import leases, nodes
from pipeline.agent_lines import AgentChange, agent_line
from pipeline.agents.merge_queue import MergeQueue
from pipeline.envelope import SignedOp, ops_after
from pipeline.events import ItemChanged
from pipeline.leases import Lease, LeaseLost
from pipeline.model import Merge
from pipeline.op_events import ITEM_KINDS, event_of
from pipeline.storage import Conn
from pipeline.store import OPS_CHANNEL, AppliedOp, OpStore

log = logging.getLogger("musher.announcer")

STATE = "announce"  # the transport_state rows' ``transport``
CURSOR = "cursor"
BATCH = 500
POLL_S = 5.0
FIRST_LOOK_S = 60.0
"""The first holder ever tells the ops of this last minute (a build node's first claims,
made before any daemon took the lease), not the older history."""


class Announcer:
    """Tells rooms of build nodes' ops while this daemon holds ``leader:notifier``.

    It is run by :class:`bot.leaders.Leadership` as a single connection would be:
    :meth:`connect` when the lease is won, :meth:`disconnect` when it is lost or released.
    """

    name = "notifier"
    account = ""

    def __init__(
        self,
        db: Db,
        store: OpStore,
        followers: Followers,
        outbox: Outbox,
        *,
        claim_ttl_s: float,
        window_s: float,
        on_merge: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db, self._store, self._followers, self._outbox = db, store, followers, outbox
        self._journal: Journal = outbox.journal
        self._state = TransportState(db)
        self._on_merge = on_merge
        self._to_merge: list[tuple[str, int]] = []  # build nodes' items that entered Merge
        self._claim_ttl_s, self._window_s, self._clock = claim_ttl_s, window_s, clock
        self.lease: Callable[[], Lease | None] = lambda: None  # the leadership's, once led
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def listen(self, listener: PgListener) -> None:
        """Wake on every op commit (and every reconnect) of the cluster."""
        listener.subscribe(OPS_CHANNEL, lambda _: self._wake.set(), self._wake.set)

    async def open(self, sink: Sink) -> None:
        """Nothing to log in to (the protocol of a single connection)."""

    async def connect(self) -> None:
        """This daemon leads: tell what is new now and after every commit."""
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="announcer")

    async def disconnect(self) -> None:
        """The lease is gone: stop at once (a pass in flight is cancelled; its write, if
        any, was fenced)."""
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            await asyncio.sleep(self._window_s)  # what lands meanwhile goes in one message
            self._wake.clear()
            try:
                while await self.tell_new() == BATCH:
                    pass
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                log.info("the notifier lease passed on; not telling")
            except MusherError as err:
                log.error("telling rooms of build nodes' work failed: %s; retrying", err)
                self._wake.set()
            except Exception:
                log.exception("telling rooms of build nodes' work failed; retrying")
                self._wake.set()

    async def tell_new(self) -> int:
        """One pass: tell the rooms of the agent nodes' ops after the stored position;
        returns how many ops were looked at.

        Raises:
            LeaseLost: this daemon no longer holds ``leader:notifier`` (nothing written).
        """
        lease = self._held()
        after = await self._position(CURSOR)
        if after is None:  # the first holder ever: the ops of the last lease TTL on
            since = self._clock() - FIRST_LOOK_S
            rows = await self._db.read("SELECT MAX(rowid) FROM ops WHERE ts < ?", (since,))
            after = int(rows[0][0] or 0)
            await self._advance(lease, after)
        ops = await ops_after(self._db, after, BATCH)
        if not ops:
            return 0
        agents = {n.key for n in await nodes.nodes(self._db) if n.role == "agent"}
        lines: list[tuple[int, str, str]] = []  # (insertion id, project, line)
        for op in ops:
            if op.author in agents and op.project is not None and op.rowid is not None:
                line = await self._line(op)
                if line is not None:
                    lines.append((op.rowid, op.project, line))
        log.debug("ops %d..%d: %d line(s) for the rooms", after + 1, ops[-1].rowid, len(lines))
        if lines:
            await self._tell(lease, lines)
        await self._advance(lease, int(ops[-1].rowid or after))
        to_merge, self._to_merge = self._to_merge, []
        if self._on_merge is not None:
            for project, number in to_merge:
                self._on_merge(project, number)  # the merge queue re-checks the stage
        return len(ops)

    async def _tell(self, lease: Lease, lines: list[tuple[int, str, str]]) -> None:
        await self._followers.refresh()
        rooms: dict[str, list[tuple[int, str]]] = {}
        for rowid, project, line in lines:
            for session in self._followers.following(project):
                rooms.setdefault(session, []).append((rowid, line))
        for session, told in rooms.items():
            done = await self._position(f"room:{session}") or 0
            fresh = [(rowid, line) for rowid, line in told if rowid > done]
            if fresh:
                await self._send(lease, session, fresh)

    async def _send(self, lease: Lease, session: str, told: list[tuple[int, str]]) -> None:
        last = told[-1][0]

        def fenced(conn: Conn) -> None:
            leases.fence(conn, lease, self._clock())
            put_in(conn, STATE, f"room:{session}", str(last))

        async def log_last(line: BotLine) -> LogEntry:
            return await self._journal.log_bot(line[0], line[2], line[3], fenced)

        if lease.expires_at - self._clock() <= 0:
            raise LeaseLost(f"lease {lease.name} (token {lease.token}) ran out")
        text = merged([line for _, line in told])
        await self._outbox.send(session, Reply(text, notice=True, key=f"announce.{last}"),
                                log_last=log_last)  # fmt: skip

    async def _line(self, op: SignedOp) -> str | None:
        try:
            change = op.decode()
        except Exception:  # appended under a check: only a newer version's op gets here
            log.warning("op %s does not decode; not told", op.rowid)
            return None
        if op.kind in ITEM_KINDS and op.item is not None and op.project is not None:
            earlier = [a for a in await self._store.item_ops(op.project, op.item)
                       if a.rowid < (op.rowid or 0)]  # fmt: skip
            event = event_of(AppliedOp(op, change, ()), earlier)
            if isinstance(event, ItemChanged) and event.to_stage == Merge() != event.from_stage:
                self._to_merge.append((event.project, event.number))
            return notice_line(event) if event is not None else None
        if isinstance(change, AgentChange):
            run = await self._store.agent_run(change.project, change.number)
            return agent_line(change, run, self._claim_ttl_s)
        return None

    async def build_nodes(self) -> bool:
        """Whether any build node ever registered (else nobody needs the lease)."""
        return any(node.role == "agent" for node in await nodes.nodes(self._db))

    def _held(self) -> Lease:
        lease = self.lease()
        if lease is None or lease.expires_at <= self._clock():
            raise LeaseLost("leader:notifier is not this daemon's")
        return lease

    async def _position(self, key: str) -> int | None:
        value = await self._state.get(STATE, key)
        return int(value) if value is not None else None

    async def _advance(self, lease: Lease, rowid: int) -> None:
        def job(conn: Conn) -> None:
            leases.fence(conn, lease, self._clock())
            put_in(conn, STATE, CURSOR, str(rowid))

        await self._db.write(job)


def lead_announcer(
    leaders: Leaders,
    listener: PgListener,
    db: Db,
    store: OpStore,
    followers: Followers,
    outbox: Outbox,
    settings: Settings,
    merges: MergeQueue | None = None,
) -> Announcer | None:
    """On PostgreSQL: an announcer run under ``leader:notifier``, woken by ``listener``,
    queueing the build nodes' items that reach Merge on ``merges``. None on SQLite."""
    announcer = Announcer(db, store, followers, outbox, claim_ttl_s=settings.store.claim_ttl_s,
                          window_s=settings.daemon.notify_window_s,
                          on_merge=merges.request if merges else None)  # fmt: skip
    role = leaders.lead(announcer, announcer.build_nodes)
    if role is None:
        return None
    announcer.lease = lambda: role.lease
    announcer.listen(listener)
    return announcer
