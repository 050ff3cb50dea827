"""``[agents]`` and its ``[[agents.profile]]`` entries: the coding agents (A1, A2).

A profile is how one kind of agent runs: its role (``coder``, ``qa``, ``merger``), its
argv template (the prompt goes on stdin), its model, its limits and its prompt template.
When no profile of a role is configured, :data:`DEFAULT_PROFILES` supplies one.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from config.base import Section, located

Role = Literal["coder", "qa", "merger"]

PROMPT_FIELDS = frozenset(
    {"item", "title", "body", "worktree", "branch", "base_branch", "project", "failure"}
)
"""The names a profile's ``prompt`` may use, written ``{name}``."""
COMMAND_FIELDS = frozenset({"model", "worktree", "max_turns"})
"""The names a profile's ``command`` may use in its arguments."""

DEFAULT_COMMAND = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
CODER_PROMPT = (
    "You are working on item #{item} of project {project}: {title}\n\n{body}\n\n"
    "Work only in {worktree}, on branch {branch} (made from {base_branch}). Commit your work"
    " on that branch before you exit: the server runs the project's gates when you exit,"
    " then QA and the merge. Never push, never merge, never touch {base_branch}.\n{failure}"
)
QA_PROMPT = (
    "Review item #{item} of project {project}: {title}\n\n{body}\n\n"
    "The work is on branch {branch} in {worktree}; compare it with {base_branch}. End with a"
    " report whose last line is exactly APPROVED or REJECTED: <reason>.\n"
)


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"not a valid template: {err}") from None


class AgentProfile(Section):
    """One ``[[agents.profile]]``: how an agent of one role runs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Profile name")
    role: Role = Field(default="coder", description="coder, qa or merger")
    command: list[str] = Field(
        default=DEFAULT_COMMAND, min_length=1, description="argv template; prompt on stdin"
    )
    model: str | None = Field(default=None, description="Model (--model); unset = CLI default")
    max_turns: int = Field(default=50, ge=1, description="Turns before the agent is stopped")
    max_budget_usd: float = Field(default=5.0, gt=0, description="Spend before it is stopped")
    prompt: str = Field(default="", description="Prompt template; empty = the role's default")

    @field_validator("prompt")
    @classmethod
    def _known_prompt_fields(cls, value: str) -> str:
        unknown = _fields(value) - PROMPT_FIELDS
        if unknown:
            raise ValueError(
                f"unknown field {{{sorted(unknown)[0]}}}; use {', '.join(sorted(PROMPT_FIELDS))}"
            )
        return value

    @field_validator("command")
    @classmethod
    def _known_command_fields(cls, value: list[str]) -> list[str]:
        for arg in value:
            unknown = _fields(arg) - COMMAND_FIELDS
            if unknown:
                raise ValueError(f"unknown field {{{sorted(unknown)[0]}}} in {arg!r}")
        return value

    def prompt_template(self) -> str:
        """The prompt template: the configured one, else the role's default."""
        if self.prompt:
            return self.prompt
        return QA_PROMPT if self.role == "qa" else CODER_PROMPT


DEFAULT_PROFILES = (
    AgentProfile(name="coder", role="coder"),
    AgentProfile(name="qa", role="qa"),
)


class AgentsConfig(Section):
    """``[agents]``: coding agents that work on items."""

    max_agents: int = Field(default=2, ge=0, description="Agents running at once; 0 = none here")
    max_retries: int = Field(default=3, ge=0, description="Failed attempts before Blocked")
    inactivity_timeout_s: float = Field(
        default=600.0, ge=0, description="Seconds without output before an agent is stopped"
    )
    stuck_after_s: float = Field(
        default=1800.0, ge=0, description="Seconds without a commit, file change or output"
    )
    merge_on: Literal["daemon", "agent"] = Field(
        default="daemon", description="Who merges: the daemon, or the headless agent node"
    )
    profile: list[AgentProfile] = Field(default=[], description="Agent profiles")

    @model_validator(mode="after")
    def _unique_names(self) -> AgentsConfig:
        seen: set[str] = set()
        problems = []
        for i, profile in enumerate(self.profile):
            if profile.name in seen:
                problems.append((f"profile[{i}].name", f"{profile.name!r} is used twice"))
            seen.add(profile.name)
        if problems:
            raise located(problems)
        return self

    def profiles(self) -> tuple[AgentProfile, ...]:
        """The configured profiles, plus a default one for each role none is configured for."""
        roles = {p.role for p in self.profile}
        names = {p.name for p in self.profile}
        extra = [p for p in DEFAULT_PROFILES if p.role not in roles and p.name not in names]
        return (*self.profile, *extra)

    def find(self, name: str) -> AgentProfile | None:
        """The profile called ``name``, if any."""
        return next((p for p in self.profiles() if p.name == name), None)
