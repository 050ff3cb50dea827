"""Where an item's agent works: its branch and its worktree (A1), named in one place."""

from __future__ import annotations

from pathlib import Path

BRANCH_PREFIX = "musher/"


def branch_name(project: str, number: int) -> str:
    """The item's branch: ``musher/<project>-<N>``."""
    return f"{BRANCH_PREFIX}{project}-{number}"


def worktrees_root(data_dir: Path) -> Path:
    """The directory that holds every project's worktrees."""
    return data_dir / "worktrees"


def worktree_path(data_dir: Path, project: str, number: int) -> Path:
    """The item's worktree: ``<data_dir>/worktrees/<project>/<N>``."""
    return worktrees_root(data_dir) / project / str(number)


def merge_path(data_dir: Path, project: str, number: int) -> Path:
    """The temporary worktree a merge of the item squashes into (removed after the merge)."""
    return worktrees_root(data_dir) / project / f"merge-{number}"
