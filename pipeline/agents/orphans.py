"""Orphaned worktrees for ``cleanup_worktrees``: on disk, but no live item works in them.

A worktree is an orphan when its item is gone (purged, or its project deleted) or no agent
will work on it again (finished). It is never one while an agent runs in it, nor while its
item is in Coding, Qa, Merge or MergeFailure (the merge side still needs the branch).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents.worktrees import admin_lock, listed_worktrees
from pipeline.engine import Engine
from pipeline.gitops import git
from pipeline.model import Abandoned, Rejected, Superseded, is_finished, stage_name

_REVIEW = (Abandoned, Rejected, Superseded)


@dataclass(frozen=True, slots=True)
class Orphan:
    project: str
    number: int
    path: Path
    repo: Path
    why: str
    drop_branch: bool


async def orphans(engine: Engine, data_dir: Path, running: set[tuple[str, int]]) -> list[Orphan]:
    """Every orphaned item worktree under ``data_dir``, by project and number."""
    out = []
    projects = {p.name: p for p in await engine.projects()}
    root = data_dir / "worktrees"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for name in names:
        record = projects.get(name)
        for number, path in sorted(listed_worktrees(data_dir, name).items()):
            if (name, number) in running:
                continue
            if record is None:
                out.append(Orphan(name, number, path, path, "project gone", False))
                continue
            item = await engine.find(name, number)
            repo = Path(record.path)
            if item is None:
                out.append(Orphan(name, number, path, repo, "item purged", True))
            elif is_finished(item.stage):
                keep = isinstance(item.stage, _REVIEW)
                out.append(Orphan(name, number, path, repo, stage_name(item.stage), not keep))
    return out


async def remove_tree_only(repo: Path, path: Path) -> None:
    """Remove a worktree but keep its branch (kept for review)."""
    if repo == path:
        shutil.rmtree(path, ignore_errors=True)
        return
    async with admin_lock(repo):
        await git(["worktree", "remove", "--force", "--", str(path)], repo)
        shutil.rmtree(path, ignore_errors=True)  # what git left (nothing, usually)
        await git(["worktree", "prune"], repo)
