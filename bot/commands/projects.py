"""The project commands (C2, N1–N3): ``projects``, ``switch``, ``all_status``,
``new project``, ``delete project`` and ``project set``.

Parts the handlers name: ``rooms`` (the engine and who follows what), ``setup`` (creates
and deletes projects, :class:`pipeline.project_setup.ProjectSetup`) and ``tell`` (posts a
line to any room: clone progress, and rooms moved off a deleted project).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from bot.commands.args import Args, Flag, NoArgs, Option, Rest
from bot.commands.board import render_projects, summary_line
from bot.commands.pipeline import RoomProjects
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply
from pipeline.engine import Engine, ProjectNotFound
from pipeline.project_setup import Created, NewProject, ProjectSetup
from pipeline.projects import SETTABLE
from pipeline.stacks import STACK_NAMES

Tell = Callable[[str, str], Awaitable[None]]
"""``tell(session, text)``: post ``text`` to a room as a notice."""


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Name = Annotated[str, BeforeValidator(_lower), Field(description="project name", max_length=200)]
"""An existing project's name, any case (a new one must be written exactly: no confusables
folded into ASCII by ``lower()``)."""


class ProjectArgs(Args):
    project: Name


class NewProjectArgs(Args):
    name: Annotated[str, Field(description="new project name: a-z, 0-9 and '-', up to 63")]
    stack: Annotated[
        str | None,
        Option("--stack"),
        BeforeValidator(_lower),
        Field(description="stack (default: detected)", json_schema_extra={"enum": STACK_NAMES}),
    ] = None
    git: Annotated[str | None, Option("--git"), Field(description="URL to clone")] = None
    path: Annotated[str | None, Option("--path"), Field(description="directory to use")] = None
    branch: Annotated[str | None, Option("--branch"), Field(description="base branch")] = None


class DeleteProjectArgs(Args):
    name: Name
    purge_files: Annotated[
        bool, Flag("--purge-files"), Field(description="also delete its directory")
    ] = False
    yes: Annotated[bool, Flag("--yes"), Field(description="confirm --purge-files")] = False


class ProjectSetArgs(Args):
    key: Annotated[
        Literal["timezone", "base_branch", "qa", "gates", "remote"],
        BeforeValidator(_lower),
        Field(description=f"one of {', '.join(SETTABLE)}"),
    ]
    value: Annotated[str, Rest, Field(min_length=1, max_length=2048, description="new value")]


def register_projects(registry: Registry) -> None:
    """Add the project commands to ``registry``."""
    _register_listing(registry)
    _register_lifecycle(registry)


def _register_listing(registry: Registry) -> None:
    @registry.command("projects", summary="List the projects", usage="projects", args=NoArgs)
    async def projects(ctx: CommandContext, args: NoArgs, *, setup: ProjectSetup) -> Reply:
        engine = setup.projects.engine
        active = await _active_or_none(engine, ctx)
        counts = await setup.projects.column_counts()
        return Reply(render_projects(await engine.projects(), active, counts))

    @registry.command(
        "switch",
        summary="Make another project this room's project",
        usage="switch <project>",
        args=ProjectArgs,
    )
    async def switch(ctx: CommandContext, args: ProjectArgs, *, rooms: RoomProjects) -> Reply:
        record = await rooms.engine.switch(ctx.session, args.project, ctx.origin)
        rooms.followers.note(ctx.session, record.name)
        return Reply(f"This room now works on {record.name} ({record.path}).")

    @registry.command(
        "all_status",
        summary="One line per project: items per column",
        usage="all_status",
        args=NoArgs,
        aliases=("all-status",),
    )
    async def all_status(ctx: CommandContext, args: NoArgs, *, rooms: RoomProjects) -> Reply:
        engine = rooms.engine
        active = await _active_or_none(engine, ctx)
        records = await engine.projects()
        if not records:
            return Reply("No projects yet.")
        lines = [
            summary_line(p.name, await engine.items(p.name), p.name == active) for p in records
        ]
        return Reply("\n".join(lines))

    @registry.command(
        "project set",
        summary="Change a setting of this room's project",
        usage=f"project set <{'|'.join(SETTABLE)}> <value>",
        args=ProjectSetArgs,
        permission=Permission.ADMIN,
    )
    async def project_set(
        ctx: CommandContext, args: ProjectSetArgs, *, rooms: RoomProjects, setup: ProjectSetup
    ) -> Reply:
        _, project = await rooms.room_project(ctx)
        record = await setup.projects.set(project, args.key, args.value, ctx.origin)
        value = getattr(record, args.key)
        if args.key == "gates":
            value = "; ".join(" ".join(argv) for argv in value) or "none"
        return Reply(f"{project}: {args.key} is now {value or 'none'}.")


def _register_lifecycle(registry: Registry) -> None:
    @registry.command(
        "new project",
        summary="Create a project: a new repository, or a clone",
        usage="new project <name> [--stack S] [--git URL] [--path P] [--branch B]",
        args=NewProjectArgs,
        permission=Permission.ADMIN,
        destructive=True,
    )
    async def new_project(
        ctx: CommandContext, args: NewProjectArgs, *, setup: ProjectSetup, tell: Tell
    ) -> Reply:
        ask = NewProject(args.name, args.stack, args.git, args.path, args.branch)

        async def progress(line: str) -> None:
            await tell(ctx.session, line)

        return Reply(created_text(await setup.create(ask, ctx.origin, progress)))

    @registry.command(
        "delete project",
        summary="Unregister a project (its files stay unless --purge-files --yes)",
        usage="delete project <name> [--purge-files --yes]",
        args=DeleteProjectArgs,
        permission=Permission.ADMIN,
        destructive=True,
    )
    async def delete_project(
        ctx: CommandContext,
        args: DeleteProjectArgs,
        *,
        setup: ProjectSetup,
        rooms: RoomProjects,
        tell: Tell,
    ) -> Reply:
        record = await setup.projects.engine.project(args.name)
        if args.purge_files and not args.yes:
            return Reply(
                f"This deletes {record.path} and everything in it. To confirm:"
                f" `delete project {record.name} --purge-files --yes`. Nothing changed."
            )
        removed, files = await setup.delete(args.name, args.purge_files, ctx.origin)
        default = rooms.engine.default_project or "none"
        for session in removed.rooms:
            rooms.followers.note(session, default)
            if session != ctx.session:
                await tell(session, f"Project {args.name} was deleted; this room now works on"
                                    f" {default}.")  # fmt: skip
        cleared = ", ".join(removed.cleared)
        here = f" This room now works on {default}." if ctx.session in removed.rooms else ""
        return Reply(f"Deleted project {args.name} (cleared: {cleared}). {files}{here}")


def created_text(created: Created) -> str:
    """``new project``'s reply: name, path, stack, branch, gates, sandbox and next steps."""
    r = created.record
    gates = "; ".join(" ".join(argv) for argv in r.gates) or "none yet"
    origin = f" (cloned from {r.remote})" if r.remote else " (new repository, first commit made)"
    sandbox = created.sandbox.detail
    if not created.sandbox.ready:
        sandbox = f"not ready: {sandbox}"
    lines = [
        f"Created project {r.name}.",
        f"Path: {r.path}",
        f"Stack: {r.stack}; gates: {gates}",
        f"Branch: {r.base_branch}{origin}",
        f"Sandbox: {r.sandbox} — {sandbox}",
        *created.notes,
        f"Next: `switch {r.name}` to work on it in this room, then `new story <title>`;"
        " `project set gates <cmd>; <cmd>` changes the gates.",
    ]
    return "\n".join(lines)


async def _active_or_none(engine: Engine, ctx: CommandContext) -> str | None:
    try:
        return await engine.room_project(ctx.session)
    except ProjectNotFound:
        return None
