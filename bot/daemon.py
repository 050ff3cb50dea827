"""The composition root behind ``musher run``: builds every part, runs, shuts down in order.

Startup: open the database → build services (the event bus subscribes to the engine here,
before anything slow, lesson 1078) → load the enabled transports by name (lazily, so an
unused SDK is never imported) → mount their routes → listen → start transports → start the
timers' trigger and the bus subscribers (each reconciles first) → replay what a crash left
unanswered → write ``daemon.json``.

Shutdown (the one ordered contract, STYLE.md): stop intake (transports and HTTP) → drain
the dispatcher (running turns are cancelled and parked: their messages stay unanswered in
the journal and are replayed on the next start) → stop the bus subscribers in order (the
timers' scheduler with them) and background jobs → close the provider → flush and close
the store last.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.access import AccessPolicy
from bot.audit_buffer import AuditBuffer
from bot.board_api import mount as mount_board_api
from bot.clock import LoopClock
from bot.commands.catalogue import build_registry
from bot.cost import CostBook
from bot.db import Database
from bot.dispatcher import Dispatcher
from bot.errors import ConfigError
from bot.feed import RoomFeed
from bot.http import HttpServer, build_app
from bot.ingress import Ingress
from bot.journal import Journal, State
from bot.kv import TransportState
from bot.llm.base import Provider
from bot.llm.select import choose, make_provider
from bot.mcp_bridge import McpBridge
from bot.messages import QueuedText
from bot.metrics import Metrics
from bot.outbox import Outbox
from bot.pipeline_api import mount as mount_pipeline_api
from bot.schema import DAEMON_SCHEMA
from bot.services import Services
from bot.subscribers import build_pipeline, bus_gauges
from bot.transport import HttpMount, Transport, TransportContext, live_health
from bot.turns import TurnRunner
from config.models import Settings
from pipeline.engine import Engine, project_slug
from pipeline.keys import load_or_create
from pipeline.model import SystemOrigin
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


def build_services(
    settings: Settings, db: Database, store: OpStore, *, provider: Provider | None = None
) -> Services:
    """Wire journal, feed, metrics, registry, dispatcher, turn runner, engine and bus.

    ``provider`` overrides ``[llm] provider`` (benchmarks and tests).
    """
    journal = Journal(db)
    bridge = McpBridge()
    feed = RoomFeed()
    metrics = Metrics()
    registry = build_registry()

    async def run_turn(session: str, batch: Sequence[QueuedText]) -> None:
        await runner.run(session, batch)

    async def discard(session: str, batch: Sequence[QueuedText]) -> None:
        await journal.mark([i for m in batch for i in m.journal_ids], State.STOPPED)

    dispatcher = _dispatcher(settings, metrics, run_turn, discard)
    engine = Engine(store, max_retries=settings.agents.max_retries)
    outbox, audit = Outbox(journal, feed, metrics, settings.daemon.name), AuditBuffer()
    parts = build_pipeline(settings, engine, journal, outbox, audit, LoopClock())
    services = Services(
        settings=settings,
        journal=journal,
        feed=feed,
        metrics=metrics,
        outbox=outbox,
        registry=registry,
        provider=provider or make_provider(settings, db, bridge),
        dispatcher=dispatcher,
        costs=CostBook(db),
        data_dir=db.path.parent,
        mcp=bridge,
        store=store,
        engine=engine,
        bus=parts.bus,
        followers=parts.followers,
        notifier=parts.notifier,
        timers=parts.timers,
        audit=audit,
    )
    runner = TurnRunner(services)
    metrics.gauge("musher_queue_depth", "Messages waiting for a turn", dispatcher.queue_depth)
    metrics.gauge("musher_sessions", "Sessions held in memory", dispatcher.session_count)
    bus_gauges(metrics, parts.bus)
    return services


def _dispatcher(
    settings: Settings,
    metrics: Metrics,
    run_turn: Callable[[str, Sequence[QueuedText]], Awaitable[None]],
    discard: Callable[[str, Sequence[QueuedText]], Awaitable[None]],
) -> Dispatcher:
    d = settings.dispatcher
    return Dispatcher(
        run_turn=run_turn,
        discard=discard,
        clock=LoopClock(),
        coalesce_window_s=d.coalesce_window_ms / 1000,
        max_wait_s=d.max_wait_ms / 1000,
        busy_mode=d.busy_mode,
        queue_cap=d.queue_cap,
        idle_ttl_s=d.idle_session_ttl_s,
        on_batch=metrics.batch_size.observe,
    )


async def ensure_default_project(services: Services, cwd: Path | None = None) -> str:
    """Register the default project unless it exists, and make it the rooms' default (N1).

    Its name is ``[projects] default``, else a slug of ``cwd``'s name (the current
    directory); its path is ``cwd``. Idempotent across restarts.
    """
    cwd = (cwd or Path.cwd()).resolve()
    settings = services.settings.projects
    name = settings.default or project_slug(cwd.name)
    await services.engine.ensure_project(
        name, str(cwd), timezone=settings.timezone, origin=SystemOrigin("daemon", "startup")
    )
    services.engine.default_project = name
    return name


class Daemon:
    """One running musher. Use :meth:`run` (foreground, until signalled)."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.stopping = asyncio.Event()
        self.health: dict[str, str] = {}
        self.url = ""
        self._lock_file: Any = None

    async def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT (or :attr:`stopping`), shut down in order."""
        self._take_lock()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        db = await Database.open(self.data_dir / "musher.db", DAEMON_SCHEMA)
        try:
            store = await OpStore.open(db, load_or_create(self.data_dir))
            self.health["store"] = "ok"
            await self._serve(db, store)
        finally:
            await db.aclose()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / "daemon.json").unlink()
            log.info("stopped")

    async def _serve(self, db: Database, store: OpStore) -> None:
        services = build_services(self.settings, db, store)
        log.info("default project: %s", await ensure_default_project(services))
        services.ambient.update(r.session for r in await store.rooms() if r.ambient)
        transports = self._load_transports(services, db)
        ingress = Ingress(services, _Identities(transports))
        token = self.settings.http.token
        app = build_app(
            services.metrics,
            lambda: {**self.health, **live_health(transports)},
            token.get_secret_value() if token else None,
            self.settings.http.max_body_bytes,
        )
        for transport in transports:
            if isinstance(transport, HttpMount):
                transport.mount(app)
        services.mcp.mount(app)
        mount_pipeline_api(app, services.engine)
        mount_board_api(app, services.engine)
        server = HttpServer(app, self.settings.http.host, self.settings.http.port)
        self.url = await server.start()
        services.mcp.url = self.url
        try:
            for transport in transports:
                self.health[f"transport:{transport.name}"] = "starting"
                await transport.start(ingress)
                self.health[f"transport:{transport.name}"] = "ok"
            await self._start_pipeline(services)
            self.health["dispatcher"] = "ok"
            await ingress.replay()
            self._write_daemon_json()
            choice = choose(self.settings)
            log.info("LLM provider: %s (%s)", choice.name, choice.reason)
            log.info("listening on %s", self.url)
            async with asyncio.TaskGroup() as jobs:
                prune = jobs.create_task(self._prune_loop(services), name="journal-prune")
                await self.stopping.wait()
                log.info("shutting down")
                prune.cancel()
        finally:
            budget = max(1.0, self.settings.daemon.shutdown_timeout_s - 1.0)
            try:
                async with asyncio.timeout(budget):
                    await self._shutdown(services, transports, server)
            except TimeoutError:
                log.error("shutdown took longer than %.0f s; closing the store anyway", budget)

    async def _shutdown(
        self, services: Services, transports: list[Transport], server: HttpServer
    ) -> None:
        self.health = {k: "stopping" for k in self.health}
        for transport in transports:  # 1. stop intake
            with contextlib.suppress(Exception):
                await transport.aclose()
        await server.aclose()
        await services.dispatcher.aclose()  # 2. park running turns
        await services.bus.aclose()  # 3. subscribers in order; the timers' scheduler stops
        await services.provider.aclose()  # background jobs were stopped by the task group

    async def _start_pipeline(self, services: Services) -> None:
        """Load who follows what, start the timers' trigger, then the bus subscribers (each
        reconciles first: due timers fire, missed promotions happen)."""
        log.info("%d rooms follow a project", await services.followers.load())
        services.timers.start()
        await services.bus.start()
        self.health["bus"] = "ok"

    def _load_transports(self, services: Services, db: Database) -> list[Transport]:
        ctx = TransportContext(
            self.settings,
            db,
            services.journal,
            services.feed,
            services.metrics,
            TransportState(db),
            services.registry,
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
            section = getattr(self.settings.transports, name)
            services.access[name] = AccessPolicy.build(
                section.allowed_users, section.admins, everyone_admin=(name == "web")
            )
            services.outbox.transports[name] = transport
            transports.append(transport)
        return transports

    async def _prune_loop(self, services: Services) -> None:
        while True:
            await services.journal.prune()
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
