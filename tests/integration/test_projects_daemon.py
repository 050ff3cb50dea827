"""Projects through a real ``musher run``: two projects in two rooms, notifications follow
each room's project, a restart keeps the registry and every room's project, delete."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def say(daemon: DaemonProcess, room: str, text: str) -> str:
    """Post ``text`` to ``room`` and return the bot's reply to it."""
    count = len(daemon.bot_texts(room))
    assert daemon.post(room, text).status_code == 202
    replies = daemon.wait_for(room, count + 1)
    assert len(replies) == count + 1, f"no reply to {text!r}"
    return replies[-1]


def config(tmp_path: Path) -> str:
    return (
        f'[projects]\ndefault = "home"\nroot = "{tmp_path / "projects"}"\n'
        'git_user_name = "Musher Test"\ngit_user_email = "musher@example.org"\n'
    )


def test_two_projects_in_two_rooms_survive_a_restart(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = make_daemon(window_ms=50, extra=config(tmp_path)).start()
    assert say(daemon, "lobby", "new project shop").startswith("Created project shop.")
    assert say(daemon, "side", "switch shop").startswith("This room now works on shop")
    assert say(daemon, "lobby", "new story Home work") == "Created #1 Home work (story) in home."
    assert say(daemon, "ops", "switch shop").startswith("This room now works on shop")
    assert say(daemon, "ops", "new story Shop work") == "Created #1 Shop work (story) in shop."

    # side follows shop: it hears of the new item; lobby (on home) does not.
    assert daemon.wait_for("side", 2)[-1] == "#1 Shop work: new story (by alice)"
    assert not any("Shop work" in text for text in daemon.bot_texts("lobby"))

    assert daemon.terminate() == 0
    daemon.start()
    assert say(daemon, "side", "status").startswith("shop: 1 item")
    assert say(daemon, "lobby", "status").startswith("home: 1 item")
    listed = say(daemon, "side", "projects")
    assert "  shop (this room) — " in listed and "; backlog 1" in listed

    reply = say(daemon, "lobby", "delete project shop")
    assert reply.startswith("Deleted project shop (cleared: project, 1 item, 2 rooms).")
    assert daemon.wait_for("side", 5)[-1] == (
        "Project shop was deleted; this room now works on home."
    )
    assert say(daemon, "side", "status").startswith("home: 1 item")
    assert daemon.terminate() == 0
