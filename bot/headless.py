"""``musher agent``: a headless build node (K3) on the shared store.

No HTTP server, no transports. The node opens the store under its own key (kept in
``--workdir``, so a restarted node keeps its identity), registers in ``nodes`` with role
``agent`` and heartbeats, and every ``POLL_S`` (at once when any node commits an op, on
PostgreSQL: LISTEN ``musher_ops`` through :class:`bot.pg_listen.PgListener`) brings its
agent pool in line with the store: items in Coding that no live node works on are claimed
(the same ``agent.claim`` the daemon's pool uses, one claim per item cluster-wide, see
:func:`pipeline.agent_rows.apply_agent`), worked on a clone of the project's ``remote``
and pushed (:class:`pipeline.agents.remote.RemoteCheckouts`). Claims of agent nodes that
stopped heartbeating for ``[store] claim_ttl_s`` are released first
(:mod:`bot.claim_ttl`), so another node takes them over; a node that finds its claim taken
stops its agent (the pool's reconcile). Its ops are refused until its key is trusted.
With ``[agents] merge_on = "agent"`` it also merges the items it worked, in its clone, and
pushes the base branch (the daemon then leaves build nodes' items alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from bot.claim_ttl import release_stale
from bot.cost import SCHEMA as COSTS
from bot.cost import CostBook
from bot.db import Db
from bot.pg_listen import PgListener
from bot.store_url import open_db
from config.errors import MusherError
from config.models import Settings
from pipeline import leases, nodes
from pipeline.agents.logbook import Logbook
from pipeline.agents.merge_queue import MergeQueue, MergeSettings
from pipeline.agents.pool import AgentPool
from pipeline.agents.remote import RemoteCheckouts
from pipeline.agents.work import Parts
from pipeline.engine import Engine
from pipeline.keys import NodeKey, load_or_create
from pipeline.sandbox import Sandbox, make_sandbox
from pipeline.storage import Storage
from pipeline.store import OPS_CHANNEL, OpStore, ProjectRecord

log = logging.getLogger("musher.agent")

POLL_S = 1.0
ROLE = "agent"


def node_label(name: str) -> str:
    """What ``agent_runs.node`` says of a build node called ``name``."""
    return f"{ROLE}:{name}"


def say(project: str, line: str) -> None:
    """A node has no rooms: what the pool and the merges would tell them goes to the log
    (a chat daemon tells the rooms from the node's ops, see :mod:`bot.announcer`)."""
    log.info("%s: %s", project, line)


def build_pool(
    settings: Settings, engine: Engine, workdir: Path, name: str, costs: CostBook
) -> tuple[AgentPool, MergeQueue | None]:
    """The node's pool (the daemon's, on clones of the remotes, pushing each attempt; its
    agents' spend booked in the shared cost book, for the rooms' ``cost``) and, with
    ``[agents] merge_on = "agent"``, its merge queue for the items it worked."""
    network = settings.projects.sandbox_network
    checkouts = RemoteCheckouts(workdir)
    me = node_label(name)

    def sandbox_for(record: ProjectRecord) -> Sandbox:
        return make_sandbox(record.sandbox, data_dir=workdir, network=network)

    parts = Parts(
        engine=engine, config=settings.agents, data_dir=workdir, node=me,
        logbook=Logbook(workdir), sandbox_for=sandbox_for, say=say, record_cost=costs.record_agent,
        checkout=checkouts.checkout, publish=checkouts.publish,
        works_on=lambda record: bool(record.remote), notes_in_ops=True,
    )  # fmt: skip
    if settings.agents.merge_on != "agent":
        return AgentPool(parts), None
    git_user = (settings.projects.git_user_name, settings.projects.git_user_email)
    merging = MergeSettings(workdir, sandbox_for, git_user, checkout=checkouts.checkout,
                            wants=lambda run: run is not None and run.node == me)  # fmt: skip
    return AgentPool(parts), MergeQueue(engine, merging, say)


async def trusted(store: OpStore, key: NodeKey, settings: Settings) -> bool:
    """Whether the store accepts this node's ops (trusted by an op or by the config)."""
    if key.public_hex in settings.store.trusted_keys:
        return True
    return key.public_hex in await store.trusted_keys()


async def run_node(settings: Settings, url: str, workdir: Path, name: str) -> None:
    """Run the build node until SIGTERM/SIGINT; then park its agents (killed, verified)."""
    key = load_or_create(workdir)
    db = await open_db(url, workdir, nodes.SCHEMA + leases.SCHEMA + COSTS)
    stop, wake = asyncio.Event(), asyncio.Event()

    def stopping() -> None:
        stop.set()
        wake.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    try:
        store = await OpStore.open(db, key, trusted=settings.store.trusted_keys,
                                   self_trusted=False)  # fmt: skip
        pool, merges = build_pool(settings, Engine(store), workdir, name, CostBook(db))
        interval = settings.store.lease_ttl_s / 3
        beat = asyncio.create_task(nodes.keep_beating(db, key.public_hex, name, ROLE, interval))
        log.info("build node %s (key %s) on %s", name, key.public_hex, db.describe())
        listener = await _wake_on_ops(db, url, wake)
        try:
            await _work(db, store, key, settings, (pool, merges), (stop, wake))
        finally:
            if listener is not None:
                await listener.aclose()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await pool.aclose()
            if merges is not None:
                await merges.aclose()
    finally:
        await db.aclose()


async def _work(
    db: Storage, store: OpStore, key: NodeKey, settings: Settings,
    parts: tuple[AgentPool, MergeQueue | None], events: tuple[asyncio.Event, asyncio.Event],
) -> None:  # fmt: skip
    pool, merges = parts
    stop, wake = events
    told = False
    while not stop.is_set():
        wake.clear()
        if not await trusted(store, key, settings):
            if not told:
                log.warning("this node's key is not trusted yet; an admin runs `node trust %s`",
                            key.public_hex)  # fmt: skip
                told = True
        else:
            try:
                await release_stale(db, store, pool.parts.node, settings.store.claim_ttl_s)
                await pool.reconcile()
                if merges is not None:
                    await merges.reconcile()
            except MusherError as err:  # the store or git failed: try again next pass
                log.error("build node pass failed: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_S)  # a stop, or a commit: see below


async def _wake_on_ops(db: Db, url: str, wake: asyncio.Event) -> PgListener | None:
    """On PostgreSQL, end the node's wait as soon as any node commits an op (an item may
    have entered Coding): the poll every ``POLL_S`` stays as the fallback."""
    if db.backend != "postgresql":
        return None
    listener = PgListener(url)
    listener.subscribe(OPS_CHANNEL, lambda _payload: wake.set(), wake.set)
    await listener.start()
    return listener
