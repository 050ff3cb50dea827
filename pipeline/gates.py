"""Run a project's gates (A2) in its sandbox: argv lists, in order, no shell."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.sandbox import RunResult, Sandbox, SandboxProject
from pipeline.stacks import Gates

TAIL_LINES = 40


@dataclass(frozen=True, slots=True)
class GateReport:
    """Whether every gate passed; the first failing gate and its output's tail if not."""

    passed: bool
    failed: tuple[str, ...] = ()
    tail: str = ""


async def run_gates(
    sandbox: Sandbox,
    project: SandboxProject,
    gates: Gates,
    *,
    cwd: Path | None = None,
    timeout_s: float = 1800.0,
) -> GateReport:
    """Run ``gates`` one by one in ``cwd`` (the project, or a worktree inside it); stop at
    the first failure. No gates means passed."""
    for argv in gates:
        result: RunResult = await sandbox.run(project, argv, cwd=cwd, timeout_s=timeout_s)
        if not result.ok:
            lines = result.output.rstrip().splitlines()[-TAIL_LINES:]
            if result.timed_out:
                lines.append(f"(timed out after {timeout_s:.0f} s)")
            return GateReport(False, tuple(argv), "\n".join(lines))
    return GateReport(True)
