"""How a tool use is shown, allowed and confined (L7): pure functions, no I/O but paths."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.tool_uses import escape, matches, render, rule_for
from pipeline.errors import PipelineError
from pipeline.materialise import create_tables, read_tables
from pipeline.ops import SetRoom


def test_renderings_are_one_short_line_without_backticks(tmp_path: Path) -> None:
    assert render("Bash", {"command": "git status"}, tmp_path) == "Bash: `git status`"
    hostile = render("Bash", {"command": "echo `id`\n" + "x" * 500}, tmp_path)
    assert hostile.count("`") == 2 and "\n" not in hostile and len(hostile) < 320
    edit = {"file_path": str(tmp_path / "a.py"), "old_string": "a\nb", "new_string": "c\nd\ne"}
    assert render("Edit", edit, tmp_path) == "Edit: `a.py` (-2 +3 lines)"
    assert render("Write", {"file_path": "b.txt", "content": "1\n2\n"}, tmp_path) == (
        "Write: `b.txt` (2 lines)"
    )
    assert render("Grep", {"pattern": "TODO", "path": "src"}, tmp_path) == "Grep: `TODO` in `src`"


def test_always_rules_cover_a_program_but_never_a_compound_command() -> None:
    assert rule_for("Bash", {"command": "git log -3"}) == "Bash(git *)"
    assert rule_for("Edit", {"file_path": "x"}) == "Edit"
    assert matches("Bash(git *)", "Bash", {"command": "git status"})
    assert not matches("Bash(git *)", "Bash", {"command": "git status; rm -rf ."})
    assert not matches("Bash(git *)", "Bash", {"command": "gitk"})
    compound = {"command": "make && make test"}
    assert rule_for("Bash", compound) == "Bash(make && make test)"
    assert matches("Bash(make && make test)", "Bash", compound)
    assert not matches("Bash(make && make test)", "Bash", {"command": "make && rm x"})
    assert matches("Edit", "Edit", {}) and not matches("Edit", "Write", {})


def test_paths_leading_out_of_the_project_are_found(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    assert escape("Bash", {"command": "ls -la src"}, root) is None
    assert escape("Read", {"file_path": str(root / "a.txt")}, root) is None
    for command in ("cat ../x", "cat /etc/passwd", "cat out/x", "cp a --target=/tmp", "ls ~"):
        assert escape("Bash", {"command": command}, root), command
    assert escape("Read", {"file_path": "out/x"}, root)
    assert escape("Edit", {"file_path": "/etc/hosts"}, root)
    assert escape("Bash", {"command": "echo 'unbalanced"}, root)


def test_room_tools_are_a_room_set_op_and_an_older_rooms_table_reads_as_migrated() -> None:
    change = SetRoom("web:lobby", tools=("Bash(git *)",))
    assert change.to_payload() == {"session": "web:lobby", "tools": ["Bash(git *)"]}
    assert SetRoom.from_payload(None, None, change.to_payload()) == change
    with pytest.raises(PipelineError):
        SetRoom("web:lobby", tools=("",))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE rooms (session TEXT PRIMARY KEY, project TEXT, ambient INTEGER)")
    conn.execute("INSERT INTO rooms VALUES ('web:a', NULL, 1)")
    assert read_tables(conn)["rooms"] == [("web:a", None, 1, "[]")]
    create_tables(conn)
    assert read_tables(conn)["rooms"] == [("web:a", None, 1, "[]")]
