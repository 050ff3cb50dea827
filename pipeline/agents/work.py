"""One item's agent work, from spawn to verdict (A2): run the profile in the item's worktree,
then run the gates there and move the item, retry with the failure, or block it.

Every state change is an op: the claim (by the pool), ``agent.progress`` when the process
runs and reports its session id, ``agent.end`` once it is verified gone. A run stopped by
the pool (``stop``, purge, the item moving on) writes nothing here: whoever stopped it
writes the end after the kill was verified. A cancelled run (shutdown) writes nothing at
all: its row stays ``running`` (parked) and the next start's reconcile resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from config.agents import AgentProfile, AgentsConfig
from pipeline.agent_ops import AgentProgress, ClaimAgent, EndAgent
from pipeline.agents.logbook import Logbook
from pipeline.agents.profiles import Job, argv_for, prompt_for
from pipeline.agents.runner import AgentProcess, Limits, Outcome
from pipeline.agents.stream import Seen
from pipeline.agents.worktrees import commits_ahead, ensure_worktree, head, sandbox_view
from pipeline.engine import Engine
from pipeline.errors import PipelineError
from pipeline.gates import run_gates
from pipeline.model import AgentOrigin, Origin, SystemOrigin
from pipeline.sandbox import Sandbox, SandboxProject
from pipeline.store import ProjectRecord
from pipeline.transitions import Block, QaPass, Submit

log = logging.getLogger("musher.agents")

HEARTBEAT_S = 30.0
PUSH_EVERY_S = 2.0
TELL_EVERY_S = 20.0
Say = Callable[[str, str], None]
"""``say(project, line)``: tell the rooms that follow ``project``."""
RecordCost = Callable[[str, int, str, float], Awaitable[None]]
"""``record_cost(project, item, profile, usd)``: book an agent run's spend (L5)."""
Checkout = Callable[[ProjectRecord, int], Awaitable[Path]]
"""``checkout(record, number)``: the repository item worktrees are made from (a build
node's clone of the remote; the daemon's is the project's own path)."""
Publish = Callable[[ProjectRecord, Path, str], Awaitable[None]]
"""``publish(record, worktree, branch)``: push the item's branch (a build node)."""


@dataclass(slots=True)
class Active:
    """An agent the pool runs now (in memory; the table holds its state)."""

    project: str
    number: int
    profile: AgentProfile
    started: float
    process: AgentProcess | None = None
    task: asyncio.Task[None] | None = None
    stopping: str | None = None
    last: str = ""
    last_told: float = field(default=-1e9)


@dataclass(frozen=True, slots=True)
class Parts:
    """What every run needs, given once by the pool."""

    engine: Engine
    config: AgentsConfig
    data_dir: Path
    node: str
    logbook: Logbook
    sandbox_for: Callable[[ProjectRecord], Sandbox]
    say: Say
    record_cost: RecordCost | None
    gate_timeout_s: float = 1800.0
    checkout: Checkout | None = None
    publish: Publish | None = None
    works_on: Callable[[ProjectRecord], bool] | None = None
    """Which projects this pool takes items of (None: all; a build node: those it can
    clone)."""
    notes_in_ops: bool = False
    """A build node (no rooms): the notable lines it tells go into ``agent.progress`` as
    ``note``, for a chat daemon to tell the rooms (:mod:`bot.announcer`)."""

    async def repo_of(self, record: ProjectRecord, number: int) -> Path:
        """Where item ``number``'s worktree is made from."""
        if self.checkout is None:
            return Path(record.path)
        return await self.checkout(record, number)


def origin_of(profile: AgentProfile) -> Origin:
    return AgentOrigin(profile.role, profile.name)


class ItemRun:
    """Runs ``active`` until a verdict; :meth:`run` loops over retries."""

    def __init__(self, parts: Parts, active: Active, attempts: int, session: str | None) -> None:
        self.p = parts
        self.a = active
        self.attempts = attempts
        self.session = session
        self.failure = ""
        self._beat = 0.0
        self._pushing: tuple[ProjectRecord, Job] | None = None
        self._pushed = ("", 0.0)  # the head pushed last, and when it was looked at

    @property
    def key(self) -> tuple[str, int]:
        return self.a.project, self.a.number

    def note(self, line: str, *, tell: bool = False, always: bool = False) -> bool:
        """Log ``line`` for ``logs N``; tell the rooms when asked, rate-limited unless
        ``always`` (state changes and gate results). True if the rooms were told."""
        project, number = self.key
        self.p.logbook.append(project, number, line)
        self.a.last = line[:200]
        now = asyncio.get_running_loop().time()
        if always or (tell and now - self.a.last_told >= TELL_EVERY_S):
            self.a.last_told = now
            self.p.say(project, f"#{number} agent {self.a.profile.name}: {line[:160]}")
            return True
        return False

    async def run(self) -> None:
        retried_fresh = False
        while True:
            record = await self.p.engine.project(self.a.project)
            item = await self.p.engine.lookup(*self.key)
            repo = await self.p.repo_of(record, item.number)
            tree = await ensure_worktree(
                repo, self.p.data_dir, record.name, item.number, record.base_branch
            )
            job = Job(record.name, item.number, item.title, item.body, tree.path, tree.branch,
                      record.base_branch, self.failure)  # fmt: skip
            self._pushing = (record, job)
            outcome, before = await self._spawn(record, repo, job)
            if outcome is None or self.a.stopping:
                return
            await self._book_cost(outcome)
            stream = outcome.stream
            if stream.rate_limited_until is not None:
                await self._end("rate_limited", outcome, resume_at=stream.rate_limited_until)
                return
            resumed = self.session is not None and not retried_fresh
            if outcome.exit not in (0, None) and resumed and stream.session_id is None:
                self.note("the CLI crashed before reporting a session: retrying once afresh")
                self.session, retried_fresh = None, True
                continue
            self.session = stream.session_id or self.session
            verdict = await self._verdict(record, repo, job, outcome, before)
            if verdict is None:
                return
            self.failure = verdict
            if not await self._retry(outcome, verdict):
                return

    async def _spawn(
        self, record: ProjectRecord, repo: Path, job: Job
    ) -> tuple[Outcome | None, str]:
        sandbox = self.p.sandbox_for(record)
        view = sandbox_view(SandboxProject(record.name, repo, record.stack), repo, job.worktree)
        profile = self.a.profile
        launch = sandbox.launch(view, argv_for(profile, job, self.session), job.worktree)
        c = self.p.config
        limits = Limits(profile.max_turns, profile.max_budget_usd, c.inactivity_timeout_s,
                        c.stuck_after_s)  # fmt: skip
        process = AgentProcess(launch, prompt_for(profile, job), job.worktree, limits)
        before = await head(job.worktree)
        self.a.process = process
        self.note(f"started ({'resuming ' + self.session if self.session else 'new session'})")
        try:
            return await process.run(self._on_line), before
        except OSError as err:
            self.note(f"could not start {launch.argv[0]}: {err}", always=True)
            await self._write(EndAgent(*self.key, "failed", None, f"could not start: {err}",
                                       None, self.attempts))  # fmt: skip
            return None, before

    async def _on_line(self, seen: Seen) -> None:
        process = self.a.process
        assert process is not None
        now = asyncio.get_running_loop().time()
        fields: dict[str, object] = {}
        if self._beat == 0.0 and process.pid is not None:
            fields["pid"] = process.pid
        if seen.new_session and process.stream.session_id:
            fields["session_id"] = process.stream.session_id
        if seen.log and self.note(seen.log, tell=seen.notable) and self.p.notes_in_ops:
            fields["note"] = seen.log[:160]
        if fields or now - self._beat >= HEARTBEAT_S:
            self._beat = now
            await self._write(AgentProgress(*self.key, {**fields, "turns": process.stream.turns}))
        await self._push_commits(now)

    async def _push_commits(self, now: float) -> None:
        """A build node pushes the branch while the agent works (at most every
        ``PUSH_EVERY_S``, when its head moved), so a node that dies loses no commit."""
        last, looked = self._pushed
        if self.p.publish is None or self._pushing is None or now - looked < PUSH_EVERY_S:
            return
        record, job = self._pushing
        tip = await head(job.worktree)
        self._pushed = (last, now)
        if tip and tip != last and await commits_ahead(job.worktree, job.base_branch):
            try:
                await self.p.publish(record, job.worktree, job.branch)
            except PipelineError as err:
                self.note(f"could not push {job.branch}: {err}")
                return
            self._pushed = (tip, now)

    async def _verdict(
        self, record: ProjectRecord, repo: Path, job: Job, outcome: Outcome, before: str
    ) -> str | None:
        """None when the item moved on; else the failure to retry with."""
        if outcome.killed:
            return f"stopped: {outcome.killed}"
        if self.a.profile.role == "qa":
            return await self._qa_verdict(outcome)
        moved = await head(job.worktree) != before
        if moved and self.p.publish is not None:  # pushed at each attempt: a reclaim resumes
            await self.p.publish(record, job.worktree, job.branch)
        if outcome.exit != 0 and not moved:
            return f"the agent exited with code {outcome.exit} without new commits"
        if await commits_ahead(job.worktree, record.base_branch) == 0:
            return f"no commits on {job.branch} ahead of {record.base_branch}"
        sandbox = self.p.sandbox_for(record)
        view = sandbox_view(SandboxProject(record.name, repo, record.stack), repo, job.worktree)
        report = await run_gates(sandbox, view, record.gates, cwd=job.worktree,
                                 timeout_s=self.p.gate_timeout_s)  # fmt: skip
        if not report.passed:
            gate = " ".join(report.failed)
            self.note(f"gate `{gate}` failed", always=True)
            return f"gate `{gate}` failed:\n{report.tail}"
        await self._end("completed", outcome)
        event = QaPass() if record.qa == "server" else Submit()
        where = "merge" if record.qa == "server" else "qa"
        self.note(f"gates passed → {where}", always=True)
        await self._move(event)
        return None

    async def _qa_verdict(self, outcome: Outcome) -> str | None:
        result = (outcome.stream.result or "").strip()
        last = result.splitlines()[-1].strip() if result else ""
        if outcome.exit != 0 or not (last == "APPROVED" or last.startswith("REJECTED")):
            return f"the QA agent gave no verdict (exit {outcome.exit})"
        await self._end("completed", outcome)
        if last == "APPROVED":
            self.note("QA approved → merge", always=True)
            await self._move(QaPass())
        else:
            reason = last.removeprefix("REJECTED").lstrip(": ").strip() or "rejected"
            self.note(f"QA rejected: {reason}", always=True)
            try:
                await self.p.engine.qa_failed(*self.key, origin_of(self.a.profile), reason)
            except PipelineError as err:
                self.note(f"could not send it back: {err}")
        return None

    async def _retry(self, outcome: Outcome, failure: str) -> bool:
        """Count a failed attempt; True to run again, False once the item is blocked."""
        self.attempts += 1
        limit = self.p.config.max_retries
        await self._end("failed", outcome, reason=failure)
        tail = failure.strip().splitlines()[-1][:200] if failure.strip() else "failed"
        if self.attempts > limit:
            self.note(f"attempt {self.attempts} failed; blocked: {tail}", always=True)
            reason = f"agent failed {self.attempts} times: {failure.strip()}"[:2000]
            await self._move(Block(reason), SystemOrigin("agents", "out of retries"))
            return False
        self.note(f"attempt {self.attempts} failed ({tail}); retrying", always=True)
        p = self.a.profile
        await self._write(ClaimAgent(*self.key, p.name, p.role, self.p.node, self.attempts))
        self.a.process = None
        return True

    async def _end(
        self, state: str, outcome: Outcome, *, reason: str = "", resume_at: float | None = None
    ) -> None:
        await self._write(EndAgent(*self.key, state, outcome.exit, reason, resume_at,
                                   self.attempts, outcome.stream.cost_usd))  # fmt: skip

    async def _book_cost(self, outcome: Outcome) -> None:
        cost = outcome.stream.cost_usd
        if cost > 0 and self.p.record_cost is not None:
            await self.p.record_cost(*self.key, self.a.profile.name, cost)

    async def _move(self, event: Block | QaPass | Submit, origin: Origin | None = None) -> None:
        try:
            await self.p.engine.apply(*self.key, event, origin or origin_of(self.a.profile))
        except PipelineError as err:  # someone moved it meanwhile: their move stands
            self.note(f"could not move it: {err}")

    async def _write(self, change: AgentProgress | ClaimAgent | EndAgent) -> None:
        if isinstance(change, AgentProgress | EndAgent):  # fenced: only while this node holds it
            change = replace(change, node=self.p.node)
        await self.p.engine.store.append(change, origin_of(self.a.profile))
