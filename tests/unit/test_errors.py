"""The exception tree drawn in ``config/errors.py`` is the tree the code defines, all of it."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import config.errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "config", "pipeline", "transports")
_LINE = re.compile(
    r"^(?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Za-z]+)\b.*?(?:\[(?P<module>[\w.]+)\])?$"
)


def drawn() -> list[tuple[int, str, str]]:
    """``(depth, class name, module)`` per line of the docstring's tree, top to bottom."""
    doc = config.errors.__doc__ or ""
    tree = [line[4:] for line in doc.splitlines() if line.startswith("    ")]
    rows = []
    for line in tree:
        match = _LINE.match(line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match["indent"]) // 4 + (0 if line[0].isalpha() else 1)
        rows.append((depth, match["name"], match["module"] or "config.errors"))
    return rows


def test_every_drawn_class_has_the_drawn_parent() -> None:
    rows = drawn()
    assert rows[0] == (0, "MusherError", "config.errors")
    parents: list[type] = []
    for depth, name, module in rows:
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(cls, type) and issubclass(cls, Exception), name
        del parents[depth:]
        if parents:
            assert parents[-1] in cls.__bases__, f"{name} is drawn under {parents[-1].__name__}"
        parents.append(cls)


def defined_errors() -> set[tuple[str, str]]:
    """``(module, class)`` of every class in our packages whose base is a drawn class."""
    drawn_names = {name for _, name, _ in drawn()}
    classes: list[tuple[str, str, set[str]]] = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = {ast.unparse(base).rpartition(".")[2] for base in node.bases}
                    classes.append((module.removesuffix(".__init__"), node.name, bases))
    return {(module, name) for module, name, bases in classes if bases & drawn_names}


def test_every_error_musher_defines_is_drawn() -> None:
    drawn_classes = {(module, name) for _, name, module in drawn()}
    missing = defined_errors() - drawn_classes
    assert not missing, f"draw these in config/errors.py's tree: {sorted(missing)}"
