"""Project stacks: which marker files name which stack, and each stack's default gates (N2).

Detection looks only at the project directory's top level. The order of :data:`STACKS` is
the precedence when several stacks match (the first wins, and the caller warns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

Gates = tuple[tuple[str, ...], ...]
"""A project's gates: argv lists, run in order without a shell; all must pass."""


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    markers: tuple[str, ...]
    gates: Gates


STACKS: tuple[Stack, ...] = (
    Stack("rust", ("Cargo.toml",), (("cargo", "test"),)),
    Stack("node", ("package.json", "tsconfig.json"), (("npm", "test"),)),
    Stack("go", ("go.mod",), (("go", "test", "./..."),)),
    Stack("python", ("pyproject.toml", "requirements.txt", "setup.py"), (("pytest",),)),
    Stack("ruby", ("Gemfile",), (("bundle", "exec", "rake", "test"),)),
    Stack("jvm", ("pom.xml", "build.gradle", "build.gradle.kts"), (("mvn", "-q", "test"),)),
    Stack("generic", (), ()),
)
STACK_NAMES: tuple[str, ...] = tuple(stack.name for stack in STACKS)
_BY_NAME = {stack.name: stack for stack in STACKS}


def stack_named(name: str) -> Stack:
    """The stack called ``name``; ``KeyError`` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stack {name!r}; known: {', '.join(STACK_NAMES)}") from None


@dataclass(frozen=True, slots=True)
class Detected:
    """The stack a directory's marker files name, and a warning when several matched."""

    stack: Stack
    warning: str = ""


def detect_stack(path: Path) -> Detected:
    """The first stack of :data:`STACKS` whose marker file is in ``path``; ``generic`` when
    none is. Several matches pick the first and explain it in ``warning``."""
    found = [s for s in STACKS if any((path / marker).is_file() for marker in s.markers)]
    if not found:
        return Detected(_BY_NAME["generic"])
    if len(found) == 1:
        return Detected(found[0])
    others = ", ".join(s.name for s in found[1:])
    return Detected(
        found[0],
        f"Several stacks match ({found[0].name}, {others}); using {found[0].name}."
        f" Change it with `project set gates …` if that is wrong.",
    )


def gates_for(stack: Stack, path: Path) -> Gates:
    """The default gates of ``stack`` for the project at ``path`` (Gradle over Maven when
    only a Gradle build is there)."""
    if stack.name == "jvm" and not (path / "pom.xml").is_file():
        wrapper = (path / "gradlew").is_file()
        return ((("./gradlew" if wrapper else "gradle"), "test"),)
    return stack.gates
