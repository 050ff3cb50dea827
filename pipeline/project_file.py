"""A project's own settings file, ``<project>/.musher/project.toml`` (N2).

``new project`` writes it with the stack's defaults; ``project set`` keeps it in step with
the registry (the op log stays the truth: see :mod:`pipeline.projects`). The runtime files
musher keeps under ``.musher/`` are ignored by git; ``project.toml`` itself is committed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.stacks import Gates

FILE = Path(".musher") / "project.toml"
IGNORE_LINES = (".musher/*", "!.musher/project.toml")


class ProjectFileError(PipelineError):
    """``.musher/project.toml`` is unreadable or malformed; the message names the file."""


@dataclass(frozen=True, slots=True)
class ProjectFile:
    """The settings a project carries with it."""

    stack: str
    base_branch: str
    timezone: str
    qa: str
    gates: Gates
    default_coder: str = ""

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> ProjectFile:
        """From a registry record's settings (extra keys are ignored)."""
        return cls(
            settings["stack"], settings["base_branch"], settings["timezone"], settings["qa"],
            tuple(tuple(argv) for argv in settings["gates"]),
        )  # fmt: skip

    def render(self) -> str:
        """The file's text: TOML whose strings are JSON-quoted (valid TOML basic strings)."""
        gates = ", ".join("[" + ", ".join(json.dumps(a) for a in argv) + "]" for argv in self.gates)
        return (
            "# musher project settings; `project set <key> <value>` changes them from chat.\n"
            f"stack = {json.dumps(self.stack)}\n"
            f"base_branch = {json.dumps(self.base_branch)}\n"
            f"timezone = {json.dumps(self.timezone)}\n"
            f"# Who does QA: human, server (gates only) or agent.\nqa = {json.dumps(self.qa)}\n"
            "# Commands that must pass before QA and merge (argv lists, no shell).\n"
            f"gates = [{gates}]\n"
        ) + (
            f"# The agent profile that codes this project's items.\n"
            f"default_coder = {json.dumps(self.default_coder)}\n"
            if self.default_coder
            else ""
        )


def write_project_file(project_dir: Path, settings: ProjectFile) -> Path:
    """Write ``.musher/project.toml`` under ``project_dir`` (atomically); returns its path."""
    path = project_dir / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(settings.render(), encoding="utf-8")
    tmp.replace(path)
    return path


def read_project_file(project_dir: Path) -> dict[str, Any] | None:
    """The keys of ``.musher/project.toml`` under ``project_dir``, or None when absent.

    Raises:
        ProjectFileError: the file is not valid TOML.
    """
    path = project_dir / FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ProjectFileError(f"{path}: {err.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProjectFileError(f"{path}: {err}") from None


def ignore_runtime_files(project_dir: Path) -> bool:
    """Add musher's runtime files to ``.gitignore`` unless listed; returns whether it did."""
    path = project_dir / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    missing = [line for line in IGNORE_LINES if line not in text.splitlines()]
    if not missing:
        return False
    lead = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + lead + "# musher runtime files\n" + "\n".join(missing) + "\n")
    return True


def default_coder(project_dir: Path) -> str | None:
    """The ``default_coder`` profile name of the project's ``project.toml``, if it names one
    (an unreadable file names none: the project's own checks report it)."""
    try:
        data = read_project_file(project_dir)
    except ProjectFileError:
        return None
    value = (data or {}).get("default_coder")
    return value if isinstance(value, str) and value else None
