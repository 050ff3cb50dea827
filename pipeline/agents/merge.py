"""Merge an item's branch onto its project's base branch (A3): one squash commit, the gates
again, then a fast-forward of the base branch.

The steps, in order:

1. Checks that cost nothing: the base branch and ``musher/<project>-<N>`` exist; the branch
   tip was not merged already (an earlier run that died after moving the base branch is
   recognised by the ``Musher-Merge`` trailer, so it is never merged twice); the branch has
   commits ahead of the base branch (prior-art bug 519: ``no commits ahead of <base>``); a
   git identity is known.
2. A temporary worktree (``naming.merge_path``), detached at the base tip, squashes the
   branch into one commit ``musher: merge #N <title>`` by the configured identity.
   Conflicts name the files.
3. The project's gates run there, in the project's sandbox.
4. The base branch moves to that commit by a fast-forward only: where it is checked out,
   ``git merge --ff-only`` there (git refuses, and nothing changes, when an uncommitted
   file of that checkout would be touched; uncommitted changes are never committed, staged
   or overwritten); where it is not, ``git update-ref <ref> <new> <old>``, which refuses if
   the branch moved meanwhile. Never a push, never a commit in the base checkout.

Every refusal is a :class:`MergeError` whose ``kind`` is a short token and ``reason`` a
sentence for the room. The temporary worktree is removed on every path; one left by a
killed daemon is removed by :func:`sweep_leftovers` (the merge subscriber's reconcile). The
base branch is moved by one atomic git ref update, so after any crash it is either where it
was or on the whole merge.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.agents import repo as git_repo
from pipeline.agents.kill import kill_verified
from pipeline.agents.naming import branch_name, merge_path, worktrees_root
from pipeline.agents.remote import fetch_branch, push_base
from pipeline.agents.repo import run_git
from pipeline.agents.worktrees import admin_lock
from pipeline.crashpoints import crash_point
from pipeline.errors import PipelineError
from pipeline.gates import run_gates
from pipeline.gitops import identity as git_identity
from pipeline.process import Finished
from pipeline.sandbox import Sandbox, SandboxProject
from pipeline.sandbox.base import SandboxError
from pipeline.store import ProjectRecord

REASON_LINES = 20
MERGE_PREFIX = "merge-"


class MergeError(PipelineError):
    """The merge did not happen; the base branch is unchanged. ``kind`` is a token
    (``no-commits``, ``conflict``, ``gates``, ``dirty-base``, ``base-moved``, …)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MergeJob:
    """What one merge needs: the project, the item, where worktrees live, who commits and
    where gates run."""

    project: ProjectRecord
    number: int
    title: str
    data_dir: Path
    sandbox: Sandbox
    git_user: tuple[str | None, str | None] = (None, None)
    gate_timeout_s: float = 1800.0

    @property
    def repo(self) -> Path:
        return Path(self.project.path)

    @property
    def branch(self) -> str:
        return branch_name(self.project.name, self.number)

    @property
    def base(self) -> str:
        return self.project.base_branch


@dataclass(frozen=True, slots=True)
class MergeResult:
    """The commit now on the base branch, how many branch commits it squashed, and whether
    an earlier (interrupted) run had already landed it."""

    commit: str
    squashed: int
    already: bool = False


StillWanted = Callable[[], Awaitable[bool]]
"""Asked just before the base branch moves: is the item still waiting for this merge?"""


async def merge_item(job: MergeJob, still_wanted: StillWanted | None = None) -> MergeResult:
    """Squash, check and fast-forward item ``job.number``'s branch onto the base branch.

    Guarantees: nothing is created before the free checks pass; the temporary worktree is
    gone when this returns, raises or is cancelled; the base branch either stays or
    fast-forwards to the returned commit.

    Raises:
        MergeError: the merge was refused or failed; ``reason`` says why.
    """
    repo, base = job.repo, job.base
    remote = job.project.remote
    if remote:  # a build node may have pushed the branch (K3)
        await fetch_branch(repo, remote, job.branch)
    base_tip = await git_repo.rev(repo, f"refs/heads/{base}")
    if base_tip is None:
        if not await git_repo.is_repository(repo):
            raise MergeError("no-repo", f"{repo} is not a git repository.")
        raise MergeError("no-base", f"There is no base branch {base} in {repo}.")
    tip = await git_repo.rev(repo, f"refs/heads/{job.branch}")
    if tip is None:
        raise MergeError("no-branch", f"There is no branch {job.branch} to merge.")
    trailer = git_repo.merge_trailer(job.project.name, job.number, tip)
    if landed := await git_repo.merged_as(repo, base, tip, trailer):
        return MergeResult(landed, 0, already=True)
    ahead, _ = await git_repo.ahead_behind(repo, base_tip, tip)
    if ahead == 0:
        raise MergeError("no-commits", f"no commits ahead of {base}")
    try:
        who = await git_identity(*job.git_user)
    except PipelineError as err:
        raise MergeError("no-identity", str(err)) from None
    where = merge_path(job.data_dir, job.project.name, job.number)
    await remove_worktree(repo, where)  # a leftover of an interrupted run
    try:  # --force: reuse the path even if a vanished worktree is still registered there
        async with admin_lock(repo):
            await _step(["worktree", "add", "--force", "--detach", "--quiet", str(where),
                         base_tip], repo, "creating the merge worktree")  # fmt: skip
        commit = await _squash(job, where, tip, ahead, who, trailer)
        await _gates(job, where)
        if still_wanted is not None and not await still_wanted():
            raise MergeError("withdrawn", f"#{job.number} left the merge stage; not merged.")
        crash_point("merge-before-ff")
        await _fast_forward(job, base_tip, commit)
        crash_point("merge-after-ff")
    finally:
        await asyncio.shield(remove_worktree(repo, where))
    if remote:
        await push_base(repo, remote, base)
    return MergeResult(commit, ahead)


async def _step(args: list[str], cwd: Path, what: str) -> Finished:
    done = await run_git(args, cwd)
    if not done.ok:
        raise MergeError("git", f"git failed {what}: {_last_line(done)}")
    return done


async def _squash(
    job: MergeJob, where: Path, tip: str, ahead: int, who: tuple[str, str], trailer: str
) -> str:
    """One commit on the detached base tip in ``where`` with the branch's changes."""
    squashed = await run_git(["merge", "--squash", "--quiet", tip], where)
    if not squashed.ok:
        conflicts = await run_git(["diff", "--name-only", "--diff-filter=U"], where)
        files = conflicts.output.split()
        if files:
            raise MergeError("conflict", f"{job.branch} conflicts with {job.base} in: "
                             f"{', '.join(files)}.")  # fmt: skip
        raise MergeError("git", f"git merge --squash failed: {_last_line(squashed)}")
    if (await run_git(["diff", "--cached", "--quiet"], where)).ok:
        raise MergeError("empty", f"The commits on {job.branch} change nothing on {job.base}.")
    subjects = await run_git(["log", "--format=* %s", f"HEAD..{tip}"], where)
    message = (
        f"musher: merge #{job.number} {job.title}\n\n"
        f"Squash of {ahead} commit{'s' if ahead != 1 else ''} from {job.branch}:\n"
        f"{subjects.output.strip()}\n\n{trailer}\n"
    )
    name, email = who
    await _step(["-c", f"user.name={name}", "-c", f"user.email={email}", "commit", "--quiet",
                 "--no-verify", "-m", message], where, "committing the squash")  # fmt: skip
    return (await _step(["rev-parse", "HEAD"], where, "reading the squash")).output.strip()


async def _gates(job: MergeJob, where: Path) -> None:
    """The project's gates on the merged code, in its sandbox (a sandbox of its own for the
    temporary worktree, removed afterwards)."""
    if not job.project.gates:
        return
    target = SandboxProject(f"{job.project.name}-merge-{job.number}", where, job.project.stack)
    try:
        status = await job.sandbox.prepare(target)
        if not status.ready:
            raise MergeError("sandbox", f"The {job.sandbox.name} sandbox is not ready: "
                             f"{status.detail}")  # fmt: skip
        report = await run_gates(
            job.sandbox, target, job.project.gates, cwd=where, timeout_s=job.gate_timeout_s
        )
    except SandboxError as err:
        raise MergeError("sandbox", f"The gates could not run: {err}") from None
    finally:
        await asyncio.shield(job.sandbox.remove(target))
    if not report.passed:
        tail = "\n".join(report.tail.splitlines()[-REASON_LINES:])
        raise MergeError("gates", f"Gate `{shlex.join(report.failed)}` failed on the merged "
                         f"code:\n{tail}".rstrip())  # fmt: skip


async def _fast_forward(job: MergeJob, old: str, new: str) -> None:
    """Move the base branch from ``old`` to ``new`` by a fast-forward (see the module)."""
    repo, base = job.repo, job.base
    retry = f"`retry_merge {job.number}` merges onto the new {base}."
    checkout = await git_repo.checkout_of(repo, base)
    if checkout is None:
        moved = await run_git(["update-ref", "-m", f"musher: merge #{job.number}",
                               f"refs/heads/{base}", new, old], repo)  # fmt: skip
        if not moved.ok:
            raise MergeError("base-moved", f"{base} moved while merging. {retry}")
        return
    if await git_repo.rev(checkout, "HEAD") != old:
        raise MergeError("base-moved", f"{base} moved while merging. {retry}")
    forward = await run_git(["merge", "--ff-only", "--quiet", new], checkout)
    if not forward.ok:
        files = [ln.strip() for ln in forward.output.splitlines() if ln.startswith("\t")]
        if files:
            raise MergeError("dirty-base", f"The checkout {checkout} has uncommitted changes "
                             f"the merge would overwrite: {', '.join(files)}. Commit or stash "
                             f"them, then `retry_merge {job.number}`.")  # fmt: skip
        raise MergeError("base-moved", f"{base} could not fast-forward: {_last_line(forward)}")


async def remove_worktree(repo: Path, where: Path) -> None:
    """Remove the temporary worktree ``where`` and its admin entry; kill what still runs
    in it first. Idempotent: nothing there is fine (a registration whose directory vanished
    is overridden by the next ``worktree add --force`` or pruned by git itself)."""
    if not await asyncio.to_thread(os.path.lexists, where):
        return
    await kill_verified(None, where)
    known = await asyncio.to_thread(os.path.isdir, repo)
    async with admin_lock(repo):
        removed = (
            known
            and (await run_git(["worktree", "remove", "--force", "--force", str(where)], repo)).ok
        )
        if not removed:  # not (or no longer) a worktree git knows: delete it, forget it
            await asyncio.to_thread(shutil.rmtree, where, True)
            if await git_repo.is_repository(repo):
                await run_git(["worktree", "prune"], repo)


async def sweep_leftovers(data_dir: Path, project: str, repo: Path, busy: int | None) -> list[int]:
    """Remove the project's ``merge-<N>`` worktrees but ``busy``'s (a merge running now);
    returns the numbers removed. Idempotent; a no-op when nothing was left behind."""
    root = worktrees_root(data_dir) / project
    removed = []
    for path in sorted(root.glob(f"{MERGE_PREFIX}*")) if root.is_dir() else ():
        number = path.name.removeprefix(MERGE_PREFIX)
        if not number.isdecimal() or int(number) == busy:
            continue
        await remove_worktree(repo, path)
        removed.append(int(number))
    return removed


def _last_line(done: Finished) -> str:
    lines = [ln for ln in done.output.strip().splitlines() if ln.strip()]
    return "timed out" if done.timed_out else (lines[-1] if lines else "no output")
