"""Agent branches through a project's git ``remote`` (K3): build nodes clone it and push
``musher/<project>-<N>``; the daemon that owns the base checkout fetches that branch before
it merges and pushes the base branch after.

Credentials come from the environment only (git's own: ssh agent, credential helpers);
the store never holds them, and git never prompts (:func:`pipeline.gitops.git_env`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pipeline.agents.naming import branch_name, worktree_path
from pipeline.agents.repo import run_git
from pipeline.errors import PipelineError
from pipeline.gitops import GitError, redact
from pipeline.store import ProjectRecord

log = logging.getLogger("musher.agents")

TIMEOUT_S = 300.0


def _why(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


async def fetch_branch(repo: Path, remote: str, branch: str) -> bool:
    """Fast-forward ``branch`` of ``repo`` to the remote's (a node pushed it); False when
    the remote has none or it cannot move (checked out here, or diverged): the local one
    stays."""
    ref = f"refs/heads/{branch}"
    found = await run_git(["fetch", "--quiet", "--", remote, f"{ref}:{ref}"], repo,
                          timeout_s=TIMEOUT_S)  # fmt: skip
    return found.ok


async def push_base(repo: Path, remote: str, base: str) -> None:
    """Push the base branch after a merge; a failure is logged (the merge stands)."""
    ref = f"refs/heads/{base}"
    pushed = await run_git(["push", "--quiet", "--", remote, f"{ref}:{ref}"], repo,
                           timeout_s=TIMEOUT_S)  # fmt: skip
    if not pushed.ok:
        log.error("pushing %s to %s failed: %s", base, redact(remote), _why(pushed.output))


class RemoteCheckouts:
    """A build node's bare clones of project remotes, under ``<workdir>/repos``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._locks: dict[str, asyncio.Lock] = {}

    async def checkout(self, record: ProjectRecord, number: int) -> Path:
        """The project's clone, its base branch fetched; the item's branch too when the
        remote has it and no worktree of it exists here (work another node pushed).

        Raises:
            PipelineError: the project has no remote.
            GitError: the clone or the fetch failed.
        """
        if not record.remote:
            raise PipelineError(
                f"{record.name} has no remote (`project set remote <url>`); a build node"
                " works only on projects it can clone"
            )
        repo = self.workdir / "repos" / f"{record.name}.git"
        async with self._locks.setdefault(record.name, asyncio.Lock()):
            if not (repo / "HEAD").exists():
                repo.parent.mkdir(parents=True, exist_ok=True)
                cloned = await run_git(["clone", "--bare", "--quiet", "--", record.remote,
                                        str(repo)], self.workdir, timeout_s=TIMEOUT_S)  # fmt: skip
                if not cloned.ok:
                    raise GitError(f"git clone of {redact(record.remote)} failed:"
                                   f" {_why(cloned.output)}")  # fmt: skip
            base = f"refs/heads/{record.base_branch}"
            fetched = await run_git(["fetch", "--quiet", "--", record.remote, f"+{base}:{base}"],
                                    repo, timeout_s=TIMEOUT_S)  # fmt: skip
            if not fetched.ok:
                raise GitError(f"git fetch of {record.base_branch} failed: {_why(fetched.output)}")
            if not (worktree_path(self.workdir, record.name, number) / ".git").exists():
                await fetch_branch(repo, record.remote, branch_name(record.name, number))
        return repo

    async def publish(self, record: ProjectRecord, worktree: Path, branch: str) -> None:
        """Push ``branch`` (from the item's worktree) to the project's remote.

        Raises:
            GitError: the push was refused (another node's work is there) or failed.
        """
        assert record.remote
        ref = f"refs/heads/{branch}"
        pushed = await run_git(["push", "--quiet", "--", record.remote, f"{ref}:{ref}"],
                               worktree, timeout_s=TIMEOUT_S)  # fmt: skip
        if not pushed.ok:
            raise GitError(f"git push of {branch} failed: {_why(pushed.output)}")
