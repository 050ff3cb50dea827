"""Which profile works on an item, and the argv and prompt it runs with (A1, A2).

The role must match the item's stage (prior-art bug 502): a ``coder`` on Coding, a ``qa``
on Qa (when the project's ``qa = "agent"``); a ``merger`` never runs from the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from config.agents import AgentProfile
from pipeline.errors import PipelineError
from pipeline.model import Coding, Qa, Stage, stage_name

FAILURE_HEADER = "\nThe last attempt failed. What failed (the tail of its output):\n"


def role_for(stage: Stage, qa_mode: str) -> str | None:
    """The role an agent on an item in ``stage`` must have, or None when no agent works on
    it from the pool (the merge side runs its own)."""
    if isinstance(stage, Coding):
        return "coder"
    if isinstance(stage, Qa) and qa_mode == "agent":
        return "qa"
    return None


def choose(
    profiles: Sequence[AgentProfile], role: str, wanted: str | None, default: str | None
) -> AgentProfile:
    """The profile ``wanted`` (checked against ``role``), else the project's default of that
    role, else the first of that role.

    Raises:
        PipelineError: no such profile, or its role does not fit (the message says which).
    """
    by_name = {p.name: p for p in profiles}
    if wanted is not None:
        profile = by_name.get(wanted)
        if profile is None:
            names = ", ".join(sorted(by_name)) or "none"
            raise PipelineError(f"No agent profile {wanted!r}. Profiles: {names}.")
        if profile.role != role:
            raise PipelineError(
                f"Agent {profile.name!r} is a {profile.role}; this item needs a {role}."
            )
        return profile
    if default is not None and default in by_name and by_name[default].role == role:
        return by_name[default]
    for profile in profiles:
        if profile.role == role:
            return profile
    raise PipelineError(f"No agent profile has the role {role}.")


def refuse_stage(number: int, stage: Stage, qa_mode: str) -> PipelineError:
    """The refusal for an item no pool agent works on in ``stage``."""
    where = stage_name(stage)
    if isinstance(stage, Qa):
        return PipelineError(f"#{number} is in qa and this project's QA is {qa_mode!r}, not agent.")
    return PipelineError(f"No agent works on #{number} in {where}: move it to coding first.")


@dataclass(frozen=True, slots=True)
class Job:
    """What the prompt and argv of one run are made from."""

    project: str
    item: int
    title: str
    body: str
    worktree: Path
    branch: str
    base_branch: str
    failure: str = ""


def prompt_for(profile: AgentProfile, job: Job) -> str:
    """The profile's prompt template filled in (a failure comes with its header)."""
    values: Mapping[str, object] = {
        "item": job.item, "title": job.title, "body": job.body, "worktree": job.worktree,
        "branch": job.branch, "base_branch": job.base_branch, "project": job.project,
        "failure": FAILURE_HEADER + job.failure if job.failure else "",
    }  # fmt: skip
    return profile.prompt_template().format_map(values)


def argv_for(profile: AgentProfile, job: Job, resume: str | None) -> list[str]:
    """The profile's command with its fields filled in, ``--model`` and ``--resume`` added
    (for a claude-style CLI: when the template names ``{model}`` itself it is not added)."""
    values = {"model": profile.model or "", "worktree": job.worktree,
              "max_turns": profile.max_turns}  # fmt: skip
    argv = [arg.format_map(values) for arg in profile.command]
    if profile.model and not any("{model}" in arg for arg in profile.command):
        argv += ["--model", profile.model]
    if resume:
        argv += ["--resume", resume]
    return argv
