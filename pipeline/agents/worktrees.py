"""An item's git worktree (A1): made once from the base branch, reused as it is, removed
with its branch on purge and by ``cleanup_worktrees``.

Names come from :mod:`pipeline.agents.naming`. Every call runs ``git`` without a shell.
A worktree is a :class:`~pipeline.sandbox.SandboxProject` of its own (:func:`sandbox_view`):
gates and agents run in it through the project's sandbox, which may write the worktree and
the repository's ``.git`` (where the worktree's commits land) and nothing else of the data
dir.
"""

from __future__ import annotations

import asyncio
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents.naming import branch_name, worktree_path, worktrees_root
from pipeline.gitops import GitError, git
from pipeline.sandbox import SandboxProject


@dataclass(frozen=True, slots=True)
class Worktree:
    """An item's worktree: where it is, its branch, and whether this call made it."""

    path: Path
    branch: str
    created: bool


_ADMIN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def admin_lock(repo: Path) -> asyncio.Lock:
    """The lock every ``git worktree add|remove|prune`` on ``repo`` takes in this process.

    git does not lock its worktree registry: a ``prune`` for one item deletes the entry a
    concurrent ``add`` for another item is still filling in (``could not open
    '.git/worktrees/1/HEAD'``)."""
    locks = _ADMIN.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(repo.resolve(), asyncio.Lock())


async def _git_ok(args: list[str], cwd: Path, step: str) -> str:
    result = await git(args, cwd, timeout_s=120)
    if not result.ok:
        lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
        raise GitError(f"{step} failed: {lines[-1] if lines else 'no output'}")
    return result.output


async def ensure_worktree(
    repo: Path, data_dir: Path, project: str, number: int, base_branch: str
) -> Worktree:
    """The item's worktree on ``musher/<project>-<N>``, made from ``base_branch`` if missing.

    Idempotent and cheap when it exists: an existing worktree is returned as it is (no
    checkout, no setup re-run, lesson 1066). An existing branch without a worktree (kept by
    abandon or reject) is checked out again rather than recreated.

    Raises:
        GitError: git refused (no such base branch, not a repository); nothing is left
            half-made.
    """
    path, branch = worktree_path(data_dir, project, number), branch_name(project, number)
    if (path / ".git").exists():
        return Worktree(path, branch, created=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with admin_lock(repo):
        await git(["worktree", "prune"], repo)
        exists = (await git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo)).ok
        if exists:
            args = ["worktree", "add", "--", str(path), branch]
        else:
            args = ["worktree", "add", "-b", branch, "--", str(path), base_branch]
        try:
            await _git_ok(args, repo, "git worktree add")
        except GitError:
            shutil.rmtree(path, ignore_errors=True)
            raise
    return Worktree(path, branch, created=True)


async def remove_worktree(repo: Path, data_dir: Path, project: str, number: int) -> list[str]:
    """Remove the item's worktree and delete its branch; returns what was removed
    (``worktree``, ``branch musher/…``). Idempotent: what is gone already is skipped."""
    path, branch = worktree_path(data_dir, project, number), branch_name(project, number)
    removed = []
    async with admin_lock(repo):
        if path.exists():
            await git(["worktree", "remove", "--force", "--", str(path)], repo)
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)
            removed.append("worktree")
        await git(["worktree", "prune"], repo)
    if (await git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo)).ok:
        deleted = await git(["branch", "-D", branch], repo)  # branch: musher/…, never an option
        if deleted.ok:
            removed.append(f"branch {branch}")
        elif (await git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo)).ok:
            raise GitError(f"git branch -D failed: {deleted.output.strip()[-200:]}")
    return removed


def listed_worktrees(data_dir: Path, project: str) -> dict[int, Path]:
    """The item worktrees on disk for ``project``, by item number (merge ones left out)."""
    root = worktrees_root(data_dir) / project
    if not root.is_dir():
        return {}
    return {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdecimal()}


async def commits_ahead(path: Path, base_branch: str) -> int:
    """How many commits the worktree's HEAD has that ``base_branch`` has not (0 on error)."""
    result = await git(["rev-list", "--count", f"{base_branch}..HEAD"], path)
    text = result.output.strip()
    return int(text) if result.ok and text.isdecimal() else 0


async def head(path: Path) -> str:
    """The worktree's HEAD commit ("" when it cannot be read)."""
    result = await git(["rev-parse", "HEAD"], path)
    return result.output.strip() if result.ok else ""


async def fingerprint(path: Path) -> str:
    """HEAD plus the worktree's uncommitted changes: it moves when the agent makes progress."""
    status = await git(["status", "--porcelain", "--untracked-files=all"], path)
    return f"{await head(path)}\n{status.output}"


def sandbox_view(project: SandboxProject, repo: Path, worktree: Path) -> SandboxProject:
    """``project`` as seen from an item's worktree: the worktree is its directory, and the
    repository's ``.git`` (which the worktree's commits write to) is writable too."""
    return SandboxProject(
        project.name, worktree, project.stack, writable=(repo.resolve() / ".git",)
    )
