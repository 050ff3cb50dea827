"""One agent process (A2, A4): spawned with its prompt on stdin in its own process group,
its stream-json read into an :class:`~pipeline.agents.stream.AgentStream`, watched for its
limits (turns, budget, inactivity, no progress) and killed only through
:func:`~pipeline.agents.kill.kill_verified`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents.kill import kill_verified
from pipeline.agents.stream import AgentStream, Seen
from pipeline.agents.worktrees import fingerprint
from pipeline.sandbox import Launch

log = logging.getLogger("musher.agents")

WATCH_EVERY_S = 0.25


@dataclass(frozen=True, slots=True)
class Limits:
    """When a running agent is stopped: turns, spend, seconds without output, seconds
    without any progress (a commit, a file change or output); 0 = no limit."""

    max_turns: int
    max_budget_usd: float
    inactivity_s: float
    stuck_s: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the process ended: its exit code (None when killed), why it was killed (None:
    it exited by itself), and what its output said."""

    exit: int | None
    killed: str | None
    stream: AgentStream


OnLine = Callable[[Seen], Awaitable[None]]


class AgentProcess:
    """Run once with :meth:`run`; :meth:`kill` may come from any task, at any time."""

    def __init__(self, launch: Launch, prompt: str, worktree: Path, limits: Limits) -> None:
        self.launch = launch
        self.prompt = prompt
        self.worktree = worktree
        self.limits = limits
        self.stream = AgentStream()
        self.pid: int | None = None
        self.last_output = 0.0
        self._killed: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._kill_lock = asyncio.Lock()

    async def run(self, on_line: OnLine) -> Outcome:
        """Spawn, feed the prompt, read to the end; ``on_line`` sees every parsed line.

        Guarantees: on return or cancellation the process group and anything running in the
        worktree are gone (verified).

        Raises:
            OSError: the program could not be started.
            KillFailed: something outlived SIGKILL.
        """
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec(
            *self.launch.argv, cwd=self.launch.cwd, env=self.launch.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=1 << 20,
        )  # fmt: skip
        self._proc, self.pid = proc, proc.pid
        self.last_output = loop.time()
        watch = asyncio.create_task(self._watch(), name=f"agent-watch:{proc.pid}")
        try:
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(self.prompt.encode())
                await proc.stdin.drain()
                proc.stdin.close()
            while line := await _readline(proc.stdout):
                self.last_output = loop.time()
                seen = self.stream.feed_line(line.decode("utf-8", "replace"))
                if seen.log or seen.new_session:
                    await on_line(seen)
                await self._check_limits()
            code = await proc.wait()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await asyncio.shield(self._reap())
        return Outcome(None if self._killed else code, self._killed, self.stream)

    async def kill(self, reason: str) -> None:
        """SIGKILL the agent and whatever runs in its worktree; return once verified gone.
        The first reason given is kept."""
        async with self._kill_lock:
            if self._killed is None:
                self._killed = reason
            await kill_verified(self.pid, self.worktree)

    async def _reap(self) -> None:
        await kill_verified(self.pid, self.worktree)
        if self._proc is not None:
            await self._proc.wait()

    async def _check_limits(self) -> None:
        s, lim = self.stream, self.limits
        if s.rate_limited_until is not None and self._killed is None:
            await self.kill("rate limited")
        elif lim.max_turns and s.turns > lim.max_turns:
            await self.kill(f"over max_turns ({s.turns} > {lim.max_turns})")
        elif lim.max_budget_usd and s.cost_usd > lim.max_budget_usd:
            await self.kill(f"over max_budget_usd (${s.cost_usd:.2f} > ${lim.max_budget_usd:.2f})")

    async def _watch(self) -> None:
        """Stop the agent when it shows no output, or no progress at all, for too long."""
        loop = asyncio.get_running_loop()
        last_print, last_progress, looked = "", loop.time(), 0.0
        every = max(WATCH_EVERY_S, min(10.0, self.limits.stuck_s / 4))
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now = loop.time()
            if self.limits.stuck_s:
                if now - looked >= every:
                    looked, print_ = now, await fingerprint(self.worktree)
                    if print_ != last_print:
                        last_print, last_progress = print_, now
                last_progress = max(last_progress, self.last_output)
                if now - last_progress > self.limits.stuck_s:
                    await self.kill(f"stuck: no progress for {self.limits.stuck_s:.0f} s")
                    return
            if self.limits.inactivity_s and now - self.last_output > self.limits.inactivity_s:
                await self.kill(f"inactive: no output for {self.limits.inactivity_s:.0f} s")
                return


async def _readline(stream: asyncio.StreamReader) -> bytes:
    """One line; an overlong line is cut rather than failing the read."""
    try:
        return await stream.readline()
    except ValueError:
        return await stream.read(1 << 20)
