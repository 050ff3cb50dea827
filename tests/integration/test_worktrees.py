"""Items' worktrees made and removed at the same time on one repository (real git)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.agents.worktrees import ensure_worktree, remove_worktree
from tests.integration.agent_env import git_out, make_repo


async def test_worktrees_made_and_removed_at_once_on_one_repo_all_succeed(tmp_path: Path) -> None:
    """Each ``add`` runs a ``prune`` first; git does not lock its worktree registry, so
    without musher's own lock a prune deleted the entry a concurrent add was filling in."""
    repo, data = make_repo(tmp_path / "shop"), tmp_path / "data"
    numbers = range(1, 9)
    for _ in range(2):
        trees = await asyncio.gather(
            *(ensure_worktree(repo, data, "shop", n, "main") for n in numbers)
        )
        assert all(tree.created and (tree.path / "README.md").exists() for tree in trees)
        listed = git_out(repo, "worktree", "list", "--porcelain")
        assert all(str(tree.path) in listed for tree in trees)
        removed = await asyncio.gather(*(remove_worktree(repo, data, "shop", n) for n in numbers))
        assert all(
            r == ["worktree", f"branch musher/shop-{n}"]
            for r, n in zip(removed, numbers, strict=True)
        )
