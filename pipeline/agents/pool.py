"""The agent pool (A1): the bus subscriber ``agents`` that gives items entering Coding a
worktree and a coder (and Qa items a QA agent when ``qa = "agent"``), up to
``[agents] max_agents`` at once, and the ``start``/``assign``/``stop`` commands' service.

At most one agent per item: in this process the pool's lock and its table of running
agents; across processes the ``agent.claim`` op, refused while the item's row is active.
The reconciler (:meth:`AgentPool.reconcile`) stops agents whose item left their stage,
resumes runs a stopped daemon parked (``--resume``, never two), re-arms rate-limit resume
times and queues what waits; it never re-runs a side effect (an existing worktree is used
as it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.agents import AgentProfile
from pipeline.agent_ops import ClaimAgent, ClearAgent, EndAgent
from pipeline.agent_rows import AgentRun
from pipeline.agents.kill import kill_verified, runs_in
from pipeline.agents.naming import worktree_path
from pipeline.agents.orphans import orphans, remove_tree_only
from pipeline.agents.profiles import choose, refuse_stage, role_for
from pipeline.agents.work import Active, ItemRun, Parts
from pipeline.agents.worktrees import remove_worktree
from pipeline.engine import Engine
from pipeline.errors import PipelineError
from pipeline.events import ItemChanged, ItemCreated, PipelineEvent
from pipeline.model import Backlog, Item, Origin, SystemOrigin, stage_name
from pipeline.project_file import default_coder
from pipeline.store import ProjectRecord
from pipeline.transitions import Start

log = logging.getLogger("musher.agents")

Key = tuple[str, int]
POOL = SystemOrigin("agents", "agent pool")


@dataclass(frozen=True, slots=True)
class Queued:
    """An item waiting for a slot: the profile wanted, the attempts so far, the session to
    resume, and whether its row is still active (a parked run: the claim resumes it)."""

    wanted: str | None = None
    attempts: int = 0
    session: str | None = None
    resume: bool = False


@dataclass(frozen=True, slots=True)
class AgentView:
    """One line of ``agents``: a running or queued agent."""

    project: str
    number: int
    profile: str
    state: str  # running | queued | rate-limited
    pid: int | None
    runtime_s: float
    turns: int
    cost_usd: float
    last: str


class AgentPool:
    """The ``agents`` bus subscriber and the pool the agent commands drive."""

    name = "agents"

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.engine: Engine = parts.engine
        self._active: dict[Key, Active] = {}
        self._queue: dict[Key, Queued] = {}  # in arrival order
        self._resume_at: dict[Key, asyncio.TimerHandle] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._closed = False
        self._watchers: list[Callable[[], None]] = []
        parts.engine.on_purge(self.purge_step)

    def watch(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever an agent starts, ends or is queued (the board's
        indicators and slot count follow it; agent ops bypass the engine's listeners)."""
        self._watchers.append(listener)

    def _changed(self) -> None:
        for listener in self._watchers:
            try:
                listener()
            except Exception:
                log.exception("an agent pool watcher failed")

    def slots(self) -> tuple[int, int]:
        """Agent slots in use and ``[agents] max_agents``."""
        return len(self._active), self.parts.config.max_agents

    # --- bus subscriber -------------------------------------------------------------------

    async def handle(self, event: PipelineEvent) -> None:
        if event.remote:  # another daemon's change: its pool acts on it, this one reconciles
            return
        match event:
            case ItemChanged() if event.from_stage != event.to_stage:
                await self._follow(event.project, event.number)
            case ItemCreated():
                await self._follow(event.project, event.number)

    async def reconcile(self) -> None:
        """Bring the running agents in line with the store (idempotent)."""
        runs = {(r.project, r.item): r for r in await self.engine.store.agent_runs()}
        works_on = self.parts.works_on
        for record in await self.engine.projects():
            if works_on is not None and not works_on(record):  # not ours: leave it be
                runs = {key: run for key, run in runs.items() if key[0] != record.name}
                continue
            for item in await self.engine.items(record.name):
                key = (record.name, item.number)
                seen = runs.pop(key, None)
                if seen is None and role_for(item.stage, record.qa) is None:
                    continue
                async with self._lock:  # re-read under the lock: another pass may have acted
                    now = await self.engine.find(*key)  # (a `start` may have moved it)
                    run = await self.engine.store.agent_run(*key)
                    await self._reconcile_item(record, now, run)
        for key, run in runs.items():  # rows of items or projects gone: nothing may run
            async with self._lock:
                await self._stop(key, "its item is gone", record=False)
            if run.pid is not None and runs_in(run.pid, self._tree(key)):
                await kill_verified(run.pid, self._tree(key))
        self._changed()
        await self._fill()

    async def aclose(self) -> None:
        """Park: kill every running agent (verified) and leave its row ``running``, for the
        next start's reconcile to resume."""
        self._closed = True
        for handle in self._resume_at.values():
            handle.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None] + list(self._jobs)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._active.clear()

    # --- commands -------------------------------------------------------------------------

    async def start(self, project: str, number: int, wanted: str | None, origin: Origin) -> str:
        """``start N [agent]``/``assign N <agent>``: an agent on the item now, or queued.

        A Backlog item is started (moved to Coding) after the claim. Refusals (an agent
        already on it, a stage no agent works in, a profile of the wrong role) raise.
        """
        async with self._lock:
            key = (project, number)
            item = await self.engine.lookup(project, number)
            record = await self.engine.project(project)
            if key in self._active:
                name = self._active[key].profile.name
                raise PipelineError(f"#{number} already has an agent ({name}).")
            stage = item.stage
            role = "coder" if isinstance(stage, Backlog) else role_for(stage, record.qa)
            if role is None:
                raise refuse_stage(number, stage, record.qa)
            profile = self._profile(record, role, wanted)
            if self.parts.config.max_agents == 0:
                raise PipelineError("This daemon runs no agents ([agents] max_agents = 0).")
            if isinstance(stage, Backlog):
                await self.engine.apply(project, number, Start(), origin)
            self._queue.pop(key, None)
            if len(self._active) >= self.parts.config.max_agents:
                self._queue[key] = Queued(profile.name)
                self._changed()
                busy = len(self._active)
                return f"#{number} is queued for {profile.name}: all {busy} agent slots are busy."
            await self._claim_and_run(key, Queued(profile.name))
            return f"Started {profile.name} on #{number} ({item.title})."

    async def stop_item(self, project: str, number: int, origin: Origin) -> str:
        """``stop N``: kill the item's agent (verified), then record it stopped."""
        item = await self.engine.lookup(project, number)
        key, why = (project, number), f"by {origin.describe()}"
        async with self._lock:
            waiting = self._queue.pop(key, None) is not None or key in self._resume_at
            self._cancel_resume(key)  # lesson 501: no resume fires after a stop
            stopped = await self._stop(key, why)
            if waiting and not stopped:  # leave a stopped row, or the reconciler queues it again
                run = await self.engine.store.agent_run(*key)
                attempts = run.attempts if run is not None else 0
                claim = ClaimAgent(*key, run.profile if run else "-", run.role if run else "coder",
                                   self.parts.node, attempts, resume=True)  # fmt: skip
                end = EndAgent(*key, "failed", None, f"stopped: {why}", None, attempts)
                await self.engine.store.append_many([claim, end], origin)
        self._changed()
        if stopped:
            await self._fill()  # its slot is free: the next queued item takes it
            return f"Stopped the agent on {item.label}; its worktree and branch are kept."
        if waiting:
            return f"{item.label} no longer waits for an agent (`start {number}` to resume)."
        return f"{item.label} has no running agent."

    async def purge_step(self, project: str, number: int) -> list[str]:
        """After a purge: kill the item's agent (verified), remove its worktree, branch and
        log; returns those layers. Idempotent."""
        key = (project, number)
        self._queue.pop(key, None)
        self._cancel_resume(key)
        layers = []
        async with self._lock:
            if await self._stop(key, "purged", record=False):
                layers.append("running agent")
        try:
            record = await self.engine.project(project)
            layers += await remove_worktree(Path(record.path), self.parts.data_dir, project, number)
        except PipelineError as err:
            log.error("purge of %s #%d: the worktree stays: %s", project, number, err)
        if self.parts.logbook.remove(project, number):
            layers.append("agent log")
        self._changed()
        return layers

    def views(self) -> list[AgentView]:
        """Running agents, then queued items, for ``agents``."""
        now = time.time()
        out = []
        for (project, number), a in self._active.items():
            proc = a.process
            turns, cost = (proc.stream.turns, proc.stream.cost_usd) if proc else (0, 0.0)
            pid = proc.pid if proc else None
            out.append(AgentView(project, number, a.profile.name, "running", pid,
                                 now - a.started, turns, cost, a.last))  # fmt: skip
        for (project, number), q in self._queue.items():
            out.append(AgentView(project, number, q.wanted or "-", "queued", None, 0, 0, 0, ""))
        for project, number in self._resume_at:
            out.append(AgentView(project, number, "-", "rate-limited", None, 0, 0, 0, ""))
        return out

    async def cleanup(self, confirm: bool) -> str:
        """``cleanup_worktrees``: the worktrees no live item in Coding, Qa or Merge needs
        (dry run), or remove them (``confirm``). Branches of items purged, done or archived
        go too; those of abandoned, rejected or superseded items stay for review."""
        found = await orphans(self.engine, self.parts.data_dir, set(self._active))
        if not found:
            return "No orphaned worktrees."
        lines = []
        for o in found:
            keep = "" if o.drop_branch else ", branch kept"
            lines.append(f"  {o.project} #{o.number}: {o.why} ({o.path}{keep})")
        if not confirm:
            return "\n".join(["Would remove:", *lines, "Run `cleanup_worktrees --confirm`."])
        for o in found:
            if o.drop_branch:
                await remove_worktree(o.repo, self.parts.data_dir, o.project, o.number)
            else:
                await remove_tree_only(o.repo, o.path)
        return "\n".join(["Removed:", *lines])

    def queued(self, project: str, number: int) -> bool:
        return (project, number) in self._queue

    def logs(self, project: str, number: int, lines: int) -> list[str]:
        return self.parts.logbook.tail(project, number, lines)

    # --- internals ------------------------------------------------------------------------

    def _tree(self, key: Key) -> Path:
        return worktree_path(self.parts.data_dir, *key)

    def _profile(self, record: ProjectRecord, role: str, wanted: str | None) -> AgentProfile:
        coder = default_coder(Path(record.path))
        return choose(self.parts.config.profiles(), role, wanted, coder)

    async def _follow(self, project: str, number: int) -> None:
        """An item changed stage: stop an agent that no longer fits, queue one that does."""
        with contextlib.suppress(PipelineError):
            record = await self.engine.project(project)
            async with self._lock:  # read under the lock: what the last holder did counts
                item = await self.engine.find(project, number)
                run = await self.engine.store.agent_run(project, number)
                await self._reconcile_item(record, item, run, fresh=True)
        self._changed()
        await self._fill()

    async def _reconcile_item(
        self, record: ProjectRecord, item: Item | None, run: AgentRun | None, *, fresh: bool = False
    ) -> None:
        """Make one item's agent fit its stage. ``fresh``: it just entered that stage."""
        if item is None:
            return
        key = (record.name, item.number)
        if run is not None and run.node != self.parts.node:
            if key in self._active:  # fenced: the claim passed to another node; its row
                log.warning("%s #%d: %s took the item over; stopping", *key, run.node)
                await self._stop(key, f"{run.node} took the item over", record=False)
            if run.active:
                self._queue.pop(key, None)
                return  # another node's agent works on it
        role = role_for(item.stage, record.qa)
        active = self._active.get(key)
        if active is not None and active.profile.role != role:
            await self._stop(key, f"#{item.number} is in {stage_name(item.stage)} now")
            active = None
        if role is None:
            self._queue.pop(key, None)
            self._cancel_resume(key)
        if run is not None and run.active and key not in self._active and role != run.role:
            await self._park_gone(key, run, f"#{item.number} is in {stage_name(item.stage)}")
            run = None
        if role is None or active is not None or key in self._queue:
            return
        if run is not None and run.active:
            await self._resume(key, run)
        elif fresh or run is None or run.role != role:
            self._queue[key] = Queued()
        elif run.state == "rate_limited" and run.resume_at is not None:
            self._arm_resume(key, run)
        elif run.state == "failed" and _retry_left(run, self.parts.config.max_retries):
            self._queue[key] = Queued(run.profile, run.attempts, run.session_id)

    async def _park_gone(self, key: Key, run: AgentRun, why: str) -> None:
        """A row still active for an item no agent may work on: kill a leftover process and
        record the run failed."""
        if run.pid is not None and runs_in(run.pid, self._tree(key)):
            await kill_verified(run.pid, self._tree(key))
        end = EndAgent(*key, "failed", None, f"stopped: {why}", None, run.attempts)
        await self.engine.store.append(end, POOL)

    async def _resume(self, key: Key, run: AgentRun) -> None:
        """A run a stopped daemon parked: make sure its old process is gone, then resume it."""
        if run.pid is not None and runs_in(run.pid, self._tree(key)):
            await kill_verified(run.pid, self._tree(key))
        queued = Queued(run.profile, run.attempts, run.session_id, resume=True)
        if len(self._active) >= self.parts.config.max_agents or self._closed:
            self._queue[key] = queued
            return
        await self._claim_and_run(key, queued)

    async def _fill(self) -> None:
        """Start queued items while slots are free (in arrival order)."""
        async with self._lock:
            while self._queue and self._free() and not self._closed:
                key, queued = next(iter(self._queue.items()))
                del self._queue[key]
                try:
                    await self._claim_and_run(key, queued)
                except PipelineError as err:
                    log.info("not starting an agent on %s #%d: %s", *key, err)

    def _free(self) -> bool:
        return len(self._active) < self.parts.config.max_agents

    async def _claim_and_run(self, key: Key, queued: Queued) -> None:
        """Claim the item (one op) and start its run task. Call with the lock held."""
        item = await self.engine.lookup(*key)
        record = await self.engine.project(key[0])
        role = "coder" if isinstance(item.stage, Backlog) else role_for(item.stage, record.qa)
        if role is None:
            raise refuse_stage(item.number, item.stage, record.qa)
        profile = self._profile(record, role, queued.wanted)
        node = self.parts.node
        claim = ClaimAgent(*key, profile.name, profile.role, node, queued.attempts, queued.resume)
        await self.engine.store.append(claim, POOL)
        log.info("%s #%d: %s claimed (attempt %d)", *key, profile.name, queued.attempts + 1)
        active = Active(key[0], key[1], profile, time.time())
        run = ItemRun(self.parts, active, queued.attempts, queued.session)
        active.task = asyncio.create_task(self._guard(run), name=f"agent:{key[0]}#{key[1]}")
        self._active[key] = active
        self._cancel_resume(key)
        self._changed()

    async def _guard(self, run: ItemRun) -> None:
        """Run one item's agent; whatever happens, free its slot and fill it again."""
        key = run.key
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("the agent on %s #%d failed", *key)
            run.note(f"failed: {err}", always=True)
            tried = run.attempts + 1  # counted, so a broken setup is not retried forever
            end = EndAgent(*key, "failed", None, f"internal error: {err}", None, tried)
            with contextlib.suppress(PipelineError):
                await self.engine.store.append(end, POOL)
        finally:
            if self._active.get(key) is run.a:
                del self._active[key]
        row = await self.engine.store.agent_run(*key)
        if row is not None and row.state == "rate_limited" and row.resume_at is not None:
            self._arm_resume(key, row)
        self._changed()
        if not self._closed:
            await self._fill()

    async def _stop(self, key: Key, why: str, *, record: bool = True) -> bool:
        """Kill the key's agent (verified) and only then record it stopped. Lock held."""
        active = self._active.get(key)
        if active is None:
            return False
        active.stopping = why
        if active.process is not None:
            await active.process.kill(why)
        if active.task is not None:
            active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await active.task
        await kill_verified(active.process.pid if active.process else None, self._tree(key))
        self._active.pop(key, None)
        if record:
            row = await self.engine.store.agent_run(*key)
            attempts = row.attempts if row is not None else 0
            end = EndAgent(*key, "failed", None, f"stopped: {why}", None, attempts)
            with contextlib.suppress(PipelineError):
                await self.engine.store.append(end, POOL)
        active.last = f"stopped: {why}"
        log.info("%s #%d: agent stopped %s", *key, why)
        self._changed()
        return True

    def _arm_resume(self, key: Key, run: AgentRun) -> None:
        """Queue the rate-limited run again at its ``resume_at`` (no retry is spent)."""
        if key in self._resume_at or self._closed or run.resume_at is None:
            return
        delay = max(0.0, run.resume_at - time.time())
        loop = asyncio.get_running_loop()
        queued = Queued(run.profile, run.attempts, run.session_id)

        def fire() -> None:
            self._resume_at.pop(key, None)
            self._queue.setdefault(key, queued)
            self._changed()
            job = loop.create_task(self._fill(), name=f"agent-resume:{key[0]}#{key[1]}")
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

        self._resume_at[key] = loop.call_later(delay, fire)

    def _cancel_resume(self, key: Key) -> None:
        handle = self._resume_at.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def clear(self, key: Key) -> None:
        """Forget the key's execution state (one ``agent.clear`` op)."""
        await self.engine.store.append(ClearAgent(*key), POOL)


def _retry_left(run: AgentRun, max_retries: int) -> bool:
    """A failed run the pool should try again: not stopped by hand, retries left."""
    return not run.reason.startswith("stopped") and run.attempts <= max_retries
