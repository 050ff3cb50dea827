"""The pipeline through a real ``musher run``: chat commands, the JSON API, restarts, purge."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.engine import project_slug
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def say(daemon: DaemonProcess, text: str) -> str:
    """Post ``text`` to the lobby and return the bot's reply to it."""
    count = len(daemon.bot_texts("lobby"))
    assert daemon.post("lobby", text).status_code == 202
    replies = daemon.wait_for("lobby", count + 1)
    assert len(replies) == count + 1, f"no reply to {text!r}"
    return replies[-1]


def items(daemon: DaemonProcess, project: str) -> list[dict[str, Any]]:
    with daemon.client() as client:
        response = client.get(f"/api/v1/projects/{project}/items")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["items"]
        return found


def restart(daemon: DaemonProcess) -> None:
    assert daemon.terminate() == 0
    daemon.start()


def test_items_live_in_the_op_log_across_restarts_and_purge(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=100).start()
    with daemon.client() as client:
        [project] = client.get("/api/v1/projects").json()["projects"]
    name = project_slug(Path.cwd().name)  # the default project is the current directory's
    assert project == {
        "name": name,
        "path": str(Path.cwd().resolve()),
        "base_branch": "main",
        "timezone": "UTC",
        "stack": "python",  # the checkout's pyproject.toml
        "sandbox": "none",
        "remote": None,
        "qa": "human",
        "gates": [["pytest"]],
    }

    assert say(daemon, "new story Login page") == f"Created #1 Login page (story) in {name}."
    assert say(daemon, "move 1 coding") == "#1 Login page: backlog → coding."
    board = say(daemon, "status")
    assert "Coding (1)\n  #1 Login page · 1m" in board
    login = {"number": 1, "kind": "story", "title": "Login page", "stage": "coding",
             "column": "coding", "badge": "active", "depends_on": [],
             "agent": None}  # fmt: skip
    assert items(daemon, name) == [login]

    restart(daemon)
    assert items(daemon, name) == [login]
    assert say(daemon, "freeze 1") == "#1 Login page: coding → frozen."
    assert items(daemon, name) == [{**login, "stage": "frozen", "badge": "frozen"}]

    assert say(daemon, "purge 1") == f"Purged #1 Login page from {name}. Cleared: item row."
    restart(daemon)
    restart(daemon)
    assert items(daemon, name) == []
    assert say(daemon, "purge 1") == f"#1 is already gone from {name}; nothing to clear."
    assert say(daemon, "new story X") == f"Created #2 X (story) in {name}."
    assert say(daemon, "move 99 qa") == f"No item #99 in {name}."
    assert [i["number"] for i in items(daemon, name)] == [2]


def test_the_pipeline_api_answers_404_and_needs_the_token(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra='token = "s3cret"').start()
    with daemon.client() as client:
        assert client.get("/api/v1/projects").status_code == 401
        assert client.get("/api/v1/projects/x/items").status_code == 401
    with daemon.client(headers={"Authorization": "Bearer s3cret"}) as client:
        assert len(client.get("/api/v1/projects").json()["projects"]) == 1
        response = client.get("/api/v1/projects/nope/items")
        assert response.status_code == 404
        assert response.json()["error"].startswith("No project 'nope'.")
