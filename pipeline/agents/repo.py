"""Read-only git questions about a project's repository: the merge and ``git`` ask them.

Every call runs ``git`` directly (no shell) with the project's hooks switched off
(``core.hooksPath=/dev/null``: a checkout or merge must never run project code outside the
sandbox) and nothing here changes a ref, an index or a file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents.naming import BRANCH_PREFIX, worktree_path
from pipeline.gitops import GitError, git
from pipeline.process import Finished

SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false")
MERGE_TRAILER = "Musher-Merge"
"""The trailer of a merge commit: ``Musher-Merge: <project>#<N> <branch tip>``."""


async def run_git(args: Sequence[str], cwd: Path, *, timeout_s: float = 120.0) -> Finished:
    """``git <args>`` in ``cwd`` with hooks and signing off."""
    return await git([*SAFE, *args], cwd, timeout_s=timeout_s)


async def rev(repo: Path, name: str) -> str | None:
    """The commit ``name`` points at, or None when there is no such ref."""
    found = await run_git(["rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], repo)
    return found.output.strip() if found.ok else None


async def ahead_behind(repo: Path, base: str, branch: str) -> tuple[int, int]:
    """How many commits ``branch`` has that ``base`` lacks, and the other way round.

    Raises:
        GitError: git could not compare them.
    """
    found = await run_git(["rev-list", "--left-right", "--count", f"{base}...{branch}"], repo)
    counts = found.output.split()[-2:] if found.ok else []
    if len(counts) != 2 or not all(n.isdecimal() for n in counts):
        raise GitError(f"git could not compare {branch} with {base}: {found.output[-200:]}")
    return int(counts[1]), int(counts[0])


async def changed_files(checkout: Path, *, untracked: bool = True) -> tuple[str, ...]:
    """The files of ``checkout`` with uncommitted changes (untracked ones too, if asked)."""
    which = "--untracked-files=normal" if untracked else "--untracked-files=no"
    found = await run_git(["status", "--porcelain", which], checkout)
    return tuple(line[3:] for line in found.output.splitlines() if len(line) > 3)


async def checked_out_branch(checkout: Path) -> str | None:
    """The branch ``checkout`` has checked out; None when its HEAD is detached."""
    found = await run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], checkout)
    return (found.output.strip() or None) if found.ok else None


async def is_repository(path: Path) -> bool:
    """Whether ``path`` is (inside) a git repository."""
    if not await asyncio.to_thread(os.path.isdir, path):
        return False
    return (await run_git(["rev-parse", "--git-dir"], path)).ok


async def checkout_of(repo: Path, branch: str) -> Path | None:
    """The worktree of ``repo`` that has ``branch`` checked out, if any (git allows one)."""
    found = await run_git(["worktree", "list", "--porcelain"], repo)
    where: Path | None = None
    for line in found.output.splitlines():
        if line.startswith("worktree "):
            where = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}":
            return where
    return None


def merge_trailer(project: str, number: int, branch_tip: str) -> str:
    """The trailer line a merge commit of ``branch_tip`` carries."""
    return f"{MERGE_TRAILER}: {project}#{number} {branch_tip}"


async def merged_as(repo: Path, base: str, branch_tip: str, trailer: str) -> str | None:
    """The commit on ``base`` (not reachable from ``branch_tip``) carrying ``trailer``: the
    squash of that exact branch tip, landed earlier. None when there is none."""
    found = await run_git(
        ["log", "--format=%H", "--max-count=1", "--fixed-strings", f"--grep={trailer}",
         f"refs/heads/{base}", f"^{branch_tip}"],
        repo,
    )  # fmt: skip
    return (found.output.strip() or None) if found.ok else None


@dataclass(frozen=True, slots=True)
class BranchState:
    """One agent branch as ``git`` shows it."""

    branch: str
    number: int
    ahead: int
    behind: int
    merged_as: str | None  # the squash commit on the base branch, once merged
    worktree: Path | None  # None: the item has no worktree (any more)
    dirty: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RepoState:
    """The base checkout and the agent branches of one project."""

    path: Path
    base: str
    checkout_branch: str | None  # None: detached HEAD
    checkout_dirty: tuple[str, ...]
    branches: tuple[BranchState, ...]


async def agent_branches(repo: Path, prefix: str) -> list[tuple[str, int]]:
    """``(branch, N)`` of every branch named ``<prefix>N``, by number."""
    found = await run_git(
        ["for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}*"], repo
    )
    out = []
    for name in found.output.split():
        tail = name.removeprefix(prefix)
        if name.startswith(prefix) and tail.isdecimal():
            out.append((name, int(tail)))
    return sorted(out, key=lambda pair: pair[1])


async def repo_state(repo: Path, project: str, base: str, data_dir: Path) -> RepoState:
    """The base checkout (branch, uncommitted files) and every ``musher/<project>-<N>``
    branch: ahead/behind ``base``, merged or not, its worktree's uncommitted files."""
    branches = []
    for branch, number in await agent_branches(repo, f"{BRANCH_PREFIX}{project}-"):
        ahead, behind = await ahead_behind(repo, f"refs/heads/{base}", f"refs/heads/{branch}")
        tip = await rev(repo, f"refs/heads/{branch}")
        landed = None
        if tip is not None and ahead:
            landed = await merged_as(repo, base, tip, merge_trailer(project, number, tip))
        where = worktree_path(data_dir, project, number)
        there = await asyncio.to_thread(os.path.isdir, where)
        dirty = await changed_files(where) if there else ()
        state = BranchState(branch, number, ahead, behind, landed, where if there else None, dirty)
        branches.append(state)
    return RepoState(
        repo, base, await checked_out_branch(repo), await changed_files(repo), tuple(branches)
    )
