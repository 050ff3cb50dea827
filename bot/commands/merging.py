"""``retry_merge N`` (P3's ``retry_merge``) and ``git [project]`` (A1): the merge's commands.

Parts the handlers name: ``rooms`` (the engine and who follows what) and ``data_dir``
(where the items' worktrees live).
"""

from __future__ import annotations

from pathlib import Path

from bot.commands.args import Args
from bot.commands.pipeline import ItemArgs, RoomProjects, changed_line
from bot.commands.projects import Name
from bot.commands.registry import CommandContext, Registry
from bot.messages import Reply
from pipeline.agents.repo import BranchState, RepoState, is_repository, repo_state
from pipeline.errors import PipelineError
from pipeline.transitions import RetryMerge, TransitionError

SHOWN_FILES = 5


class GitArgs(Args):
    project: Name | None = None


def register_merging(registry: Registry) -> None:
    """Add ``retry_merge`` and ``git`` to ``registry``."""

    @registry.command(
        "retry_merge",
        summary="Merge a failed merge again",
        usage="retry_merge N",
        args=ItemArgs,
        aliases=("retry-merge",),
    )
    async def retry_merge(ctx: CommandContext, args: ItemArgs, *, rooms: RoomProjects) -> Reply:
        engine, project = await rooms.room_project(ctx)
        try:
            changed = await engine.apply(project, args.number, RetryMerge(), ctx.origin)
        except TransitionError as err:
            raise PipelineError(f"{err} Only an item whose merge failed can retry it.") from None
        return Reply(f"{changed_line(changed)} Merging it again.")

    @registry.command(
        "git",
        summary="Agent branches: ahead/behind, merged, dirty worktrees; the base checkout",
        usage="git [project]",
        args=GitArgs,
    )
    async def git(
        ctx: CommandContext, args: GitArgs, *, rooms: RoomProjects, data_dir: Path
    ) -> Reply:
        engine, project = await rooms.room_project(ctx)
        record = await engine.project(args.project or project)
        repo = Path(record.path)
        if not await is_repository(repo):
            raise PipelineError(f"{record.name} ({repo}) is not a git repository.")
        state = await repo_state(repo, record.name, record.base_branch, data_dir)
        return Reply(render_git(record.name, state))


def render_git(project: str, state: RepoState) -> str:
    """The ``git`` reply: the base checkout first, then one line per agent branch."""
    on = f"on {state.checkout_branch}" if state.checkout_branch else "detached HEAD"
    lines = [f"{project} ({state.path}): {on}, {_files(state.checkout_dirty)}."]
    if not state.branches:
        lines.append(f"No agent branches (musher/{project}-N).")
    lines += [_branch_line(b, state.base) for b in state.branches]
    return "\n".join(lines)


def _branch_line(b: BranchState, base: str) -> str:
    if b.merged_as:
        where = f"merged into {base} as {b.merged_as[:10]}"
    else:
        where = f"{b.ahead} ahead, {b.behind} behind {base}"
    tree = f"worktree {_files(b.dirty)}" if b.worktree else "no worktree"
    return f"{b.branch}: {where}; {tree}."


def _files(files: tuple[str, ...]) -> str:
    if not files:
        return "clean"
    shown = ", ".join(files[:SHOWN_FILES]) + (", …" if len(files) > SHOWN_FILES else "")
    return f"{len(files)} uncommitted file{'s' if len(files) != 1 else ''} ({shown})"
