"""B8 merge overhead: a squash merge through musher vs the same git steps run directly.

Ours: :func:`pipeline.agents.merge.merge_item` (free checks first — refs, an earlier landed
merge, commits ahead — then a temporary worktree, ``merge --squash``, the commit, the
fast-forward of the checked-out base branch, the worktree removed). Baseline: the bare
minimum by hand in the same run — ``worktree add --detach``, ``merge --squash``,
``commit``, ``rev-parse``, ``merge --ff-only`` in the base checkout, ``worktree remove``.
No gates on either side (the gate run is its own figure). Runs alternate so drift on a
noisy machine hits both alike. Prints one JSON line; asserts nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine, median, rnd
from pipeline.agents.merge import MergeJob, merge_item
from pipeline.model import SystemOrigin
from pipeline.sandbox import LocalSandbox
from pipeline.store import ProjectRecord

RUNS = 15
WHO = ("Bench", "bench@example.org")
ENV = {**os.environ, "GIT_AUTHOR_NAME": WHO[0], "GIT_AUTHOR_EMAIL": WHO[1],
       "GIT_COMMITTER_NAME": WHO[0], "GIT_COMMITTER_EMAIL": WHO[1]}  # fmt: skip


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    done.check_returncode()
    return done.stdout


def setup(tmp: Path, branches: int) -> Path:
    """A repository on ``main`` with ``branches`` item branches of one commit each."""
    repo = tmp / "app"
    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    for n in range(200):  # a project with some files in it
        (repo / f"src{n}.txt").write_text(f"file {n}\n" * 20)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", "first", cwd=repo)
    for n in range(1, branches + 1):
        git("branch", f"musher/app-{n}", "main", cwd=repo)
        work = tmp / f"agent-{n}"
        git("worktree", "add", "--quiet", str(work), f"musher/app-{n}", cwd=repo)
        (work / f"item{n}.txt").write_text(f"item {n}\n")
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", f"item {n}", cwd=work)
        git("worktree", "remove", str(work), cwd=repo)
    return repo


async def run(*args: str, cwd: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=ENV, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {out.decode()[-300:]}")


async def bare(repo: Path, where: Path, number: int) -> float:
    start = time.monotonic()
    await run("worktree", "add", "--quiet", "--detach", str(where), "main", cwd=repo)
    await run("merge", "--squash", "--quiet", f"musher/app-{number}", cwd=where)
    await run("commit", "--quiet", "-m", f"merge #{number}", cwd=where)
    proc = await asyncio.create_subprocess_exec(
        "git", "rev-parse", "HEAD", cwd=where, stdout=asyncio.subprocess.PIPE
    )
    commit = (await proc.communicate())[0].decode().strip()
    await run("merge", "--ff-only", "--quiet", commit, cwd=repo)
    await run("worktree", "remove", "--force", str(where), cwd=repo)
    return time.monotonic() - start


async def ours(record: ProjectRecord, data_dir: Path, number: int) -> float:
    job = MergeJob(record, number, f"Item {number}", data_dir, LocalSandbox(), WHO)
    start = time.monotonic()
    await merge_item(job)
    return time.monotonic() - start


async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        repo = setup(tmp, 2 * RUNS)
        record = ProjectRecord("app", str(repo), "main", "UTC", SystemOrigin("bench", "merge"),
                               time.time())  # fmt: skip
        base, samples = [], []
        for n in range(RUNS):
            base.append(await bare(repo, tmp / "bare-merge", 2 * n + 1))
            samples.append(await ours(record, tmp / "data", 2 * n + 2))
        merged = len(git("log", "--format=%H", "main", cwd=repo).splitlines()) - 1
    p50_base, p50_ours = median(base) * 1000, median(samples) * 1000
    figures = {
        "bare_p50_ms": rnd(p50_base, 1),
        "ours_p50_ms": rnd(p50_ours, 1),
        "ratio_p50": rnd(p50_ours / p50_base),
        "merged_commits": merged,
    }
    params = {"runs": RUNS, "repo_files": 200, "gates": "none", "sandbox": "none", **machine()}
    emit("B8_merge", params, figures)


if __name__ == "__main__":
    logging.getLogger("musher").setLevel(logging.ERROR)
    asyncio.run(main())
