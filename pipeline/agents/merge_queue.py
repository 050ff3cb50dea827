"""The bus subscriber ``merge``: every item that enters Merge is merged (A3), one merge at a
time per project.

An item reaches Merge by ``move N merge``, by ``retry_merge N`` after a failure, or from
the agent pool when the project's ``qa = "server"``; all arrive here as the same change.
Each project has one worker task that takes its queued items in order; a merge ends with
``merged`` (Done with the commit) or ``merge_failed`` (MergeFailure with the reason), and
the project's following rooms get a line when it starts and one with the commit or the
reason (besides the notifier's ``merge → done`` line). The reconciler (at start and
every ``reconcile_interval_s``) removes ``merge-*`` worktrees no running merge owns (a
killed daemon's leftovers) and queues items sitting in Merge with no merge running, so a
merge interrupted by a crash is finished after the restart. Locks are in memory only and
released on every path (prior-art bug 498: a stale lock blocked merges forever). With
several daemons on one store every daemon's reconcile finds the same items, so a merge
runs under the project's lease ``merge:<project>`` (:func:`pipeline.leases.holding`): a
daemon that cannot take it leaves the item to the holder, or to its next reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from config.models import Settings
from pipeline.agent_rows import AgentRun
from pipeline.agents.merge import MergeError, MergeJob, MergeResult, merge_item, sweep_leftovers
from pipeline.engine import Engine
from pipeline.errors import PipelineError
from pipeline.events import ItemChanged, PipelineEvent
from pipeline.model import Item, Merge, SystemOrigin
from pipeline.sandbox import Sandbox, make_sandbox
from pipeline.store import ProjectRecord
from pipeline.transitions import Merged, MergeFailed

log = logging.getLogger("musher.merge")

MERGED = SystemOrigin("merge", "squash merge")
FAILED = SystemOrigin("merge", "merge failed")

Announce = Callable[[str, str], None]
"""``announce(project, text)``: tell the rooms that follow ``project``."""


@dataclass(frozen=True, slots=True)
class MergeSettings:
    """Where worktrees live, who commits, how each project's sandbox is made, gate timeout."""

    data_dir: Path
    sandbox_for: Callable[[ProjectRecord], Sandbox]
    git_user: tuple[str | None, str | None] = (None, None)
    gate_timeout_s: float = 1800.0
    wants: Callable[[AgentRun | None], bool] | None = None
    """Whether this process merges an item whose last agent run is this (None: every
    item); ``[agents] merge_on = "agent"`` leaves build nodes' items to them (K3)."""
    checkout: Callable[[ProjectRecord, int], Awaitable[Path]] | None = None
    """Where to merge (a build node's clone); None: the project's own path."""
    claim: Callable[[str], AbstractAsyncContextManager[object]] | None = None
    """``claim(project)``: held around each merge; yields something false while another
    daemon merges in ``project`` (several daemons on one store). None: no claim."""

    @classmethod
    def of(cls, settings: Settings, data_dir: Path) -> MergeSettings:
        """From bot.toml: each project in its own ``sandbox`` (``[projects]
        sandbox_network``), commits by ``[projects] git_user_name``/``git_user_email``
        (else the host's git identity)."""
        config = settings.projects

        def sandbox_for(record: ProjectRecord) -> Sandbox:
            return make_sandbox(record.sandbox, data_dir=data_dir, network=config.sandbox_network)

        wants = None if settings.agents.merge_on == "daemon" else not_a_build_nodes
        return cls(data_dir, sandbox_for, (config.git_user_name, config.git_user_email),
                   wants=wants)  # fmt: skip


def not_a_build_nodes(run: AgentRun | None) -> bool:
    """A daemon's filter under ``merge_on = "agent"``: items no build node worked on."""
    return run is None or not run.node.startswith("agent:")


class MergeQueue:
    """The bus subscriber ``merge``.

    Guarantees: at most one merge per project runs at a time and an item is queued at most
    once; an item is merged only while its stage is exactly Merge (a frozen, moved or
    purged item is skipped); each merge ends in exactly one op (``merged`` or
    ``merge_failed``) unless the item left Merge meanwhile. Cancelling (shutdown) kills the
    merge's git and gate processes and removes its worktree; the item stays in Merge and the
    next start's reconcile merges it.
    """

    name = "merge"

    def __init__(self, engine: Engine, settings: MergeSettings, announce: Announce) -> None:
        self._engine = engine
        self._settings = settings
        self._announce = announce
        self._queued: dict[str, list[int]] = {}
        self._running: dict[str, int] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def handle(self, event: PipelineEvent) -> None:
        """Queue an item that just entered Merge (on this daemon: another daemon's change is
        merged by that daemon, or found by a reconcile here)."""
        if event.remote:
            return
        if isinstance(event, ItemChanged) and event.to_stage == Merge() != event.from_stage:
            self.request(event.project, event.number)

    async def reconcile(self) -> None:
        """Sweep leftover merge worktrees and queue every item waiting in Merge."""
        for project in await self._engine.projects():
            swept = await sweep_leftovers(
                self._settings.data_dir, project.name, Path(project.path),
                self._running.get(project.name),
            )  # fmt: skip
            if swept:
                log.warning("removed leftover merge worktrees of %s: %s", project.name, swept)
            for item in await self._engine.items(project.name):
                if item.stage == Merge():
                    self.request(project.name, item.number)

    def request(self, project: str, number: int) -> None:
        """Queue item ``number`` of ``project`` unless it is queued or merging already."""
        queue = self._queued.setdefault(project, [])
        if self._closed or number in queue or self._running.get(project) == number:
            return
        queue.append(number)
        if project not in self._workers:
            task = asyncio.create_task(self._work(project), name=f"merge:{project}")
            self._workers[project] = task

    def busy(self) -> dict[str, int]:
        """The item each project is merging now."""
        return dict(self._running)

    async def aclose(self) -> None:
        """Stop the workers; a merge under way is cancelled and left to the next start."""
        self._closed = True
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _work(self, project: str) -> None:
        queue = self._queued[project]
        try:
            while queue:
                number = queue.pop(0)
                self._running[project] = number
                try:
                    await self._merge_one(project, number)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("merging %s #%d failed", project, number)
                finally:
                    del self._running[project]
        finally:
            del self._workers[project]

    async def _merge_one(self, project: str, number: int) -> None:
        claim = self._settings.claim
        if claim is None:
            await self._merge_claimed(project, number)
            return
        async with claim(project) as ours:
            if ours:
                await self._merge_claimed(project, number)
            else:
                log.info("%s #%d: another daemon is merging in %s", project, number, project)

    async def _merge_claimed(self, project: str, number: int) -> None:
        item = await self._engine.find(project, number)
        if item is None or item.stage != Merge():
            return
        record = await self._engine.project(project)
        wants = self._settings.wants
        if wants is not None and not wants(await self._engine.store.agent_run(project, number)):
            return
        if self._settings.checkout is not None:
            where = await self._settings.checkout(record, number)
            record = replace(record, path=str(where))
        self._announce(project, f"🔀 Merging {item.label} into {record.base_branch}…")
        job = MergeJob(
            record, number, item.title, self._settings.data_dir,
            self._settings.sandbox_for(record), self._settings.git_user,
            self._settings.gate_timeout_s,
        )  # fmt: skip

        async def still_wanted() -> bool:
            now = await self._engine.find(project, number)
            return now is not None and now.stage == Merge()

        try:
            result = await merge_item(job, still_wanted)
        except MergeError as err:
            await self._failed(item, project, err.kind, err.reason)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # visible as a failure, never retried in a loop
            log.exception("merging %s #%d", project, number)
            await self._failed(item, project, "error", f"The merge could not run: {err}")
        else:
            await self._merged(item, project, record.base_branch, result)

    async def _merged(self, item: Item, project: str, base: str, result: MergeResult) -> None:
        short = result.commit[:10]
        try:
            await self._engine.apply(project, item.number, Merged(result.commit), MERGED)
        except PipelineError as err:
            self._announce(project, f"⚠️ {item.label} landed on {base} as {short}, but its "
                           f"stage was left alone: {err}")  # fmt: skip
            return
        how = (
            "(found from an earlier, interrupted merge)"
            if result.already
            else f"({result.squashed} commit{'s' if result.squashed != 1 else ''} squashed)"
        )
        self._announce(project, f"✅ {item.label} merged into {base} as {short} {how}.")

    async def _failed(self, item: Item, project: str, kind: str, reason: str) -> None:
        try:
            await self._engine.apply(project, item.number, MergeFailed(kind, reason), FAILED)
        except PipelineError as err:
            log.info("not recording the failed merge of %s #%d: %s", project, item.number, err)
            self._announce(project, f"{item.label}: merge stopped ({reason})")
            return
        self._announce(project, f"❌ {item.label}: merge failed ({kind}): {reason}\n"
                       f"`retry_merge {item.number}` tries again.")  # fmt: skip
