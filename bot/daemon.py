"""The composition root behind ``musher run``: builds every part, runs, shuts down in order.

Startup: open the database → build the parts in dependency order (:func:`build_core`; the
event bus subscribes to the engine here, before anything slow, lesson 1078) → load the
enabled transports by name (lazily, so an unused SDK is never imported) → mount their routes
→ listen → start transports → start the timers' trigger and the bus subscribers (each
reconciles first) → replay what a crash left unanswered → write ``daemon.json``.

Shutdown (the one ordered contract, STYLE.md): stop intake (transports and HTTP) → let the
lanes finish the commands already acknowledged (up to half the budget) → drain the
dispatcher (running turns are cancelled and parked: their messages stay unanswered in the
journal and are replayed on the next start) → stop the bus subscribers in order (the
timers' scheduler with them) and background jobs → close the provider → flush and close
the store last.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import importlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.access import AccessPolicies
from bot.agent_api import mount as mount_agent_api
from bot.agent_pool import build_agent_pool, stop_item
from bot.announcer import lead_announcer
from bot.approvals import ApprovalDesk, ApprovalLog
from bot.audit_buffer import AuditBuffer
from bot.board_api import mount as mount_board_api
from bot.clock import Clock, LoopClock
from bot.cluster_bus import Cluster, start_cluster
from bot.commands.catalogue import build_registry
from bot.commands.pipeline import RoomProjects
from bot.commands.registry import Registry
from bot.cost import CostBook
from bot.db import Db
from bot.dispatcher import Dispatcher
from bot.feed import RoomFeed
from bot.http import HttpServer, build_app
from bot.ingress import Ingress, IngressParts
from bot.item_api import mount as mount_item_api
from bot.journal import Journal, Kind, State
from bot.journal import migrate as migrate_journal
from bot.kv import TransportState
from bot.lanes import Lanes
from bot.leaders import Leaders
from bot.llm.base import Provider
from bot.llm.select import choose, make_provider
from bot.mcp_bridge import McpBridge
from bot.messages import QueuedText, Reply, Session
from bot.metrics import Metrics
from bot.node_trust import NodeTrust
from bot.outbox import Outbox
from bot.pipeline_api import mount as mount_pipeline_api
from bot.room_handoff import RoomHandoff, room_handoff, room_leases
from bot.schema import DAEMON_SCHEMA
from bot.steer import Inboxes
from bot.store_url import open_db
from bot.subscribers import PipelineParts, build_pipeline, bus_gauges
from bot.transport import HttpMount, Transport, TransportContext, live_health
from bot.turn_retry import TurnRetry
from bot.turns import TurnParts, TurnRunner
from config.errors import ConfigError, StoreError
from config.models import Settings
from pipeline import leases
from pipeline.agents.merge_queue import MergeQueue, MergeSettings
from pipeline.agents.pool import AgentPool
from pipeline.engine import Engine
from pipeline.keys import load_or_create
from pipeline.leases import Lease
from pipeline.nodes import keep_beating, live_keys
from pipeline.project_setup import ProjectSetup, SetupConfig
from pipeline.projects import Projects
from pipeline.sandbox import make_sandbox
from pipeline.store import OpStore

log = logging.getLogger("musher")

TRANSPORT_MODULES = {
    "web": "transports.web.app",
    "matrix": "transports.matrix.client",
    "slack": "transports.slack.app",
    "discord": "transports.discord.client",
    "whatsapp": "transports.whatsapp.app",
}
PRUNE_INTERVAL_S = 3600.0


def enabled_transports(settings: Settings) -> list[str]:
    return [name for name in TRANSPORT_MODULES if getattr(settings.transports, name).enabled]


@dataclass(frozen=True, slots=True)
class Core:
    """The parts :func:`build_core` made, for the composition root to start, reach and stop.

    No part receives this record: each one was given exactly what it uses.
    """

    settings: Settings
    journal: Journal
    feed: RoomFeed
    metrics: Metrics
    outbox: Outbox
    registry: Registry
    provider: Provider
    engine: Engine
    pipeline: PipelineParts
    mcp: McpBridge
    runner: TurnRunner
    dispatcher: Dispatcher
    lanes: Lanes
    access: AccessPolicies
    approvals: ApprovalDesk
    agents: AgentPool
    handoff: RoomHandoff | None = None  # PostgreSQL: free text goes by room lease (K2)
    merges: MergeQueue | None = None

    def ingress(self, identities: Mapping[str, tuple[str, ...]]) -> Ingress:
        """The daemon's sink, given each transport's own ids (read live, see ``_Identities``)."""
        parts = IngressParts(
            journal=self.journal,
            registry=self.registry,
            rooms=self.engine,
            access=self.access,
            submit=self.handoff.submit if self.handoff else self.dispatcher.submit,
            send=self.outbox.send,
            feed=self.feed,
            metrics=self.metrics,
            lanes=self.lanes,
            bot_name=self.settings.daemon.name,
            strangers=self.settings.access,
            typing=self.dispatcher.typing,
            journalled=self.handoff.journalled if self.handoff else None,
        )
        ingress = Ingress(parts, identities)
        if self.handoff is not None:
            self.handoff.replay = ingress.replay_entries
        return ingress


def build_core(
    settings: Settings,
    db: Db,
    store: OpStore,
    *,
    provider: Provider | None = None,
    engine: Engine | None = None,
    clock: Clock | None = None,
    access: AccessPolicies | None = None,
) -> Core:
    """Build the daemon's parts in dependency order, each from parts built before it.

    ``provider`` overrides ``[llm] provider``, ``engine`` the engine over ``store`` and
    ``clock`` the dispatcher's and the pipeline subscribers' clock, ``access`` the policies
    of the enabled ``[transports.*]`` (benchmarks and tests). The command registry is made
    first and given its parts last: the ``stop`` command needs the dispatcher, which needs
    the turn runner, whose tools are the registry's commands.
    """
    journal, feed, metrics, mcp = Journal(db, store.author), RoomFeed(), Metrics(), McpBridge()
    registry, costs, audit = build_registry(), CostBook(db), AuditBuffer()
    engine = engine or Engine(store, max_retries=settings.agents.max_retries)
    outbox = Outbox(journal, feed, metrics, settings.daemon.name)
    clock = clock or LoopClock()
    pipeline = build_pipeline(settings, engine, journal, outbox, audit, clock)
    data_dir = db.data_dir
    merges = MergeQueue(engine, _merge_settings(settings, db, store.author),
                        pipeline.notifier.announce)  # fmt: skip
    pipeline.bus.add(merges)
    provider = provider or make_provider(settings, db, mcp.config_for)
    sections = {name: getattr(settings.transports, name) for name in enabled_transports(settings)}
    access = access or AccessPolicies.from_settings(sections)
    approvals = ApprovalDesk(
        access=settings.llm.tools, send=outbox.send, rules=engine, log=ApprovalLog(db),
        clock=clock, timeout_s=settings.llm.permission_timeout_s,
    )  # fmt: skip
    inboxes, leases = Inboxes(), room_leases(settings, db, store.author, metrics)
    runner = TurnRunner(
        TurnParts(journal, outbox, provider, registry, engine, audit, mcp, costs, metrics,
                  access, settings.llm.turn_timeout_s, data_dir, approvals, inboxes,
                  leases.fence if leases else None)
    )  # fmt: skip
    retrying = TurnRetry(runner.run, db.health, db.probe, outbox.send)
    run_turn = leases.guard_turns(retrying) if leases else retrying
    dispatcher = _dispatcher(settings, metrics, clock, run_turn, _discarder(journal), inboxes)
    lanes = Lanes()
    handoff = room_handoff(leases, journal, dispatcher, runner.stop, lanes,
                           settings.store.url or "")  # fmt: skip

    async def stop_here(key: str) -> None:
        session = Session.of(key)
        await approvals.deny_pending(session, "denied by stop", "The room said stop: denied.")
        runner.stop(session)
        await dispatcher.stop(session)

    async def stop_session(session: Session) -> None:
        await stop_here(session)
        if handoff is not None:  # the room's turn may run on another node
            await handoff.stop_elsewhere(session)

    if handoff is not None:
        handoff.stop_here = stop_here

    async def tell(session: str, text: str) -> None:
        await outbox.send(session, Reply(text, notice=True))

    async def reset_session(session: Session) -> None:
        await provider.reset(session)
        await approvals.forget(session)  # approvals never outlive reset (L7)

    rooms = RoomProjects(engine, pipeline.followers)
    trust = NodeTrust(store, settings.store.trusted_keys)
    agents = build_agent_pool(settings, engine, data_dir, pipeline.notifier.announce, costs)
    pipeline.bus.add(agents)
    registry.provide(agents=agents, stop_item=stop_item(rooms, agents))
    registry.provide(
        setup=project_setup(settings, engine, data_dir),
        tell=tell,
        stop_session=stop_session,
        reset_session=reset_session,
        approvals=approvals,
        engine=engine,
        rooms=rooms,
        timers=pipeline.timers,
        cost_report=costs.report,
        data_dir=data_dir,
        trust=trust,
        node_report=lambda: trust.report(db),
    )
    metrics.gauge("musher_queue_depth", "Messages waiting for a turn", dispatcher.queue_depth)
    metrics.gauge("musher_sessions", "Sessions held in memory", dispatcher.session_count)
    bus_gauges(metrics, pipeline.bus)
    return Core(settings, journal, feed, metrics, outbox, registry, provider, engine, pipeline,
                mcp, runner, dispatcher, lanes, access, approvals, agents, handoff,
                merges)  # fmt: skip


def _discarder(journal: Journal) -> Callable[[str, Sequence[QueuedText]], Awaitable[None]]:
    """The dispatcher's ``discard``: what ``stop`` dropped is never answered."""

    async def discard(session: str, batch: Sequence[QueuedText]) -> None:
        await journal.mark([i for m in batch for i in m.journal_ids], State.STOPPED)

    return discard


def _merge_settings(settings: Settings, db: Db, node: str) -> MergeSettings:
    """``[agents]``/``[projects]``'s merge settings; each merge is claimed under the
    project's lease ``merge:<project>`` (with several daemons on one store, every daemon's
    reconcile finds the items waiting in Merge)."""
    merge, ttl = MergeSettings.of(settings, db.data_dir), settings.store.lease_ttl_s

    def claim(project: str) -> AbstractAsyncContextManager[Lease | None]:
        return leases.holding(db, f"merge:{project}", node, ttl)

    return replace(merge, claim=claim)


def _dispatcher(
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
    run_turn: Callable[[str, Sequence[QueuedText]], Awaitable[None]],
    discard: Callable[[str, Sequence[QueuedText]], Awaitable[None]],
    inboxes: Inboxes,
) -> Dispatcher:
    d = settings.dispatcher
    return Dispatcher(
        run_turn=run_turn,
        discard=discard,
        clock=clock,
        coalesce_window_s=d.coalesce_window_ms / 1000,
        max_wait_s=d.max_wait_ms / 1000,
        quiet_s=d.coalesce_quiet_ms / 1000,
        busy_mode=d.busy_mode,
        queue_cap=d.queue_cap,
        idle_ttl_s=d.idle_session_ttl_s,
        on_batch=metrics.batch_size.observe,
        inboxes=inboxes,
    )


def project_setup(settings: Settings, engine: Engine, data_dir: Path) -> ProjectSetup:
    """``new project``/``delete project`` over ``engine``, with ``[projects] sandbox``."""
    config = settings.projects
    sandbox = make_sandbox(config.sandbox, data_dir=data_dir, network=config.sandbox_network)
    return ProjectSetup(
        Projects(engine),
        sandbox,
        SetupConfig(
            root=config.root, data_dir=data_dir, timezone=config.timezone,
            sandbox=config.sandbox, git_user_name=config.git_user_name,
            git_user_email=config.git_user_email,
        ),
    )  # fmt: skip


async def ensure_default_project(core: Core, cwd: Path | None = None) -> str:
    """Seed the registry from ``[projects]``, set the rooms' default project (N1, N3) and
    bring each project in step with its ``.musher/project.toml`` (the default project also
    with ``[projects] timezone``), so an edited setting takes effect on restart.

    See :meth:`pipeline.projects.Projects.seed`: idempotent, and a restart from another
    directory (``cwd``, default the current one) keeps every room's project.
    """
    projects = Projects(core.engine)
    default = await projects.seed(core.settings.projects, cwd or Path.cwd())
    await projects.follow_files(core.settings.projects.timezone)
    return default


class Daemon:
    """One running musher. Use :meth:`run` (foreground, until signalled)."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.stopping = asyncio.Event()
        self.health: dict[str, str] = {}
        self.url = ""
        self._lock_file: Any = None
        self._cluster: Cluster | None = None

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT (or :attr:`stopping`), shut down in order."""
        self._take_lock()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        db = await open_db(self.settings.store.url, self.data_dir, DAEMON_SCHEMA)
        log.info("store: %s", db.describe())
        try:
            await migrate_journal(db)
            key, trusted = load_or_create(self.data_dir), self.settings.store.trusted_keys
            store = await OpStore.open(db, key, trusted=trusted)
            self.health["store"] = f"ok; {db.backend}"
            await self._serve(db, store)
        finally:
            await db.aclose()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / "daemon.json").unlink()
            log.info("stopped")

    async def _serve(self, db: Db, store: OpStore) -> None:
        core = build_core(self.settings, db, store)
        if missing := core.registry.missing():
            raise RuntimeError(f"commands without the parts they need: {', '.join(missing)}")
        default = await ensure_default_project(core)
        log.info("default project: %s", default)
        transports = self._load_transports(core, db)
        ingress = core.ingress(_Identities(transports))
        ttl = self.settings.store.lease_ttl_s
        leaders = Leaders(db, db.backend, store.author, ttl, core.metrics)
        parts = (lambda: self.health, db.health.components, lambda: live_health(transports))
        app = build_app(core.metrics, lambda: _ready(*parts, leaders.health), self.settings)
        for transport in transports:
            if isinstance(transport, HttpMount):
                transport.mount(app)
        core.mcp.mount(app)
        mount_pipeline_api(app, core.engine)
        mount_board_api(
            app, core.engine, max_streams=self.settings.http.max_streams_per_room,
            agents=core.agents,
        )  # fmt: skip
        mount_item_api(app, core.engine, CostBook(db), core.access)
        mount_agent_api(app, core.engine, core.agents)
        server = HttpServer(app, self.settings.http.host, self.settings.http.port)
        try:
            self.url = await server.start()
        except OSError as err:  # a port in use is a setup problem: one line, no traceback
            where = f"{self.settings.http.host}:{self.settings.http.port}"
            reason = os.strerror(err.errno) if err.errno else str(err)
            problem = f"http.port: cannot listen on {where}: {reason.lower()}"
            raise ConfigError([problem]) from None
        core.mcp.url = self.url
        try:
            for transport in transports:
                self.health[f"transport:{transport.name}"] = "starting"
                await leaders.start(transport, ingress)
                self.health[f"transport:{transport.name}"] = "ok"
            await self._start_pipeline(core.pipeline)
            listener = core.handoff.listener if core.handoff else None  # one LISTEN connection
            self._cluster = await start_cluster(
                db, store, core.engine, core.pipeline, core.metrics, listener
            )
            if self._cluster is not None:  # build nodes' work is told by one daemon
                lead_announcer(leaders, self._cluster.listener, db, store, core.pipeline.followers,
                               core.outbox, self.settings, core.merges)  # fmt: skip
            self.health["dispatcher"] = "ok"
            if core.handoff is None:
                await ingress.replay()
            else:  # free text is replayed room by room, under each room's lease
                live = await live_keys(db, self.settings.store.lease_ttl_s, time.time(),
                                       store.author)  # fmt: skip
                await ingress.replay(kinds=(Kind.COMMAND,), leave=live)  # theirs may still run
                await core.handoff.start()
            gc.collect()
            gc.freeze()  # what startup built lives on: later full collections skip it
            self._write_daemon_json()
            choice = choose(self.settings)
            log.info("LLM provider: %s (%s)", choice.name, choice.reason)
            log.info("listening on %s", self.url)
            async with asyncio.TaskGroup() as jobs:
                prune = jobs.create_task(self._prune_loop(core.journal), name="journal-prune")
                watch = jobs.create_task(db.health.watch(db.probe), name="store-watch")
                beat = jobs.create_task(self._heartbeat(db, store), name="node-heartbeat")
                await self.stopping.wait()
                log.info("shutting down")
                for job in (prune, watch, beat):
                    job.cancel()
        finally:
            budget = max(1.0, self.settings.daemon.shutdown_timeout_s - 1.0)
            try:
                async with asyncio.timeout(budget):
                    await self._shutdown(core, leaders, transports, server, budget / 2)
            except TimeoutError:
                log.error("shutdown took longer than %.0f s; closing the store anyway", budget)

    async def _shutdown(
        self,
        core: Core,
        leaders: Leaders,
        transports: list[Transport],
        server: HttpServer,
        grace_s: float,
    ) -> None:
        self.health = {k: "stopping" for k in self.health}
        await leaders.aclose()  # leader leases released: another daemon takes over at once
        for transport in transports:  # 1. stop intake
            with contextlib.suppress(Exception):
                await transport.aclose()
        await server.aclose()
        if core.handoff is not None:
            await core.handoff.stop_intake()
        await core.lanes.aclose(grace_s)  # 2. finish the commands already acknowledged
        await core.dispatcher.aclose()  # 3. park running turns (their questions are withdrawn)
        if core.handoff is not None:
            await core.handoff.aclose()  # the parked rooms' leases go to the other nodes
        await core.approvals.aclose()
        if self._cluster is not None:  # other daemons' changes stop arriving, then the bus
            await self._cluster.aclose()
        await core.pipeline.bus.aclose()  # 4. subscribers in order; the timers' scheduler stops
        await core.provider.aclose()  # background jobs were stopped by the task group

    async def _start_pipeline(self, pipeline: PipelineParts) -> None:
        """Load who follows what, start the timers' trigger, then the bus subscribers (each
        reconciles first: due timers fire, missed promotions happen)."""
        log.info("%d rooms follow a project", await pipeline.followers.load())
        pipeline.timers.start()
        await pipeline.bus.start()
        self.health["bus"] = "ok"

    def _load_transports(self, core: Core, db: Db) -> list[Transport]:
        ctx = TransportContext(
            self.settings,
            db,
            core.journal,
            core.feed,
            core.metrics,
            TransportState(db),
            core.registry,
        )
        transports: list[Transport] = []
        for name in enabled_transports(self.settings):
            try:
                module = importlib.import_module(TRANSPORT_MODULES[name])
            except ModuleNotFoundError as err:
                if not (err.name and TRANSPORT_MODULES[name].startswith(err.name)):
                    raise  # a missing SDK is a real bug, not a missing transport
                raise ConfigError(
                    [f"transports.{name}: this version of musher has no {name} transport yet"]
                ) from None
            transport: Transport = module.create(ctx)
            core.outbox.attach(transport)
            transports.append(transport)
        return transports

    async def _heartbeat(self, db: Db, store: OpStore) -> None:
        interval = self.settings.store.lease_ttl_s / 3
        await keep_beating(db, store.author, socket.gethostname(), "daemon", interval)

    async def _prune_loop(self, journal: Journal) -> None:
        while True:
            try:
                await journal.prune()
            except StoreError as err:  # the store's health says why; try again next hour
                log.error("pruning the journal failed: %s", err)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _take_lock(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.data_dir / "daemon.lock", "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                [f"daemon.data_dir: {self.data_dir} is in use by another running musher"]
            ) from None
        self._lock_file = lock

    def _write_daemon_json(self) -> None:
        path = self.data_dir / "daemon.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "url": self.url}))
        tmp.replace(path)


def _ready(*parts: Callable[[], Mapping[str, str]]) -> dict[str, str]:
    """``/readyz``'s components: each part's, read now."""
    merged: dict[str, str] = {}
    for part in parts:
        merged.update(part())
    return merged


class _Identities(Mapping[str, tuple[str, ...]]):
    """Each transport's own ids, read live: some learn them while starting (Slack's
    ``auth.test``, Matrix's display name)."""

    def __init__(self, transports: Sequence[Transport]) -> None:
        self._transports = {t.name: t for t in transports}

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._transports[name].identities

    def __iter__(self) -> Iterator[str]:
        return iter(self._transports)

    def __len__(self) -> int:
        return len(self._transports)
