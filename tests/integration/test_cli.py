"""The command line agrees with the daemon (issue 9, point 6): ``check`` refuses what ``run``
refuses, a busy port is one line, and ``say`` prints the answers a user expects."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def musher(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bot", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def say(daemon: DaemonProcess, *words: str) -> subprocess.CompletedProcess[str]:
    return musher("say", "--config", str(daemon.config), "--room", "cli", *words)


def test_check_refuses_what_run_refuses_and_names_every_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path}/d"\n[http]\nhost = "0.0.0.0"\nport = 0\n'
        '[transports.discord]\nenabled = true\nbot_token = "x"\npublic_key = "abc"\n'
        "[transports.whatsapp]\nenabled = true\n"
    )

    checked = musher("check", "--config", str(config))
    ran = musher("run", "--config", str(config))

    for result in (checked, ran):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        problems = [line.split(": ")[1] for line in result.stderr.splitlines()]
        assert {
            "http.host",
            "transports.discord.public_key",
            "transports.whatsapp.meta.access_token",
        } <= set(problems)
    assert not (tmp_path / "d" / "daemon.json").exists()


def test_a_port_in_use_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "bot.toml"
        config.write_text(f'[daemon]\ndata_dir = "{tmp_path}/d"\n[http]\nport = {port}\n')

        result = musher("run", "--config", str(config))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"http.port: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_say_with_a_mention_prints_the_commands_answer(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=100).start()

    result = say(daemon, "@musher status")

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": 0 items. Add one with `new story <title>`.\n")


def test_say_takes_options_of_the_message_without_quoting(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=100).start()
    assert say(daemon, "new", "story", "Base").stdout.startswith("Created #1 Base (story) in ")

    result = say(daemon, "new", "bug", "X", "--depends", "1")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Created #2 X \(bug\) in \S+\.\nDepends on: #1\.\n", result.stdout)


def test_say_prints_an_answer_that_lands_while_it_subscribes(make_daemon: MakeDaemon) -> None:
    """Command answers are written within a millisecond of the post; every one is printed."""
    daemon = make_daemon(window_ms=100).start()
    for n in range(5):
        result = say(daemon, "help new")
        assert result.returncode == 0, (n, result.stderr)
        assert result.stdout.startswith("Usage: new story|bug"), (n, result.stdout)


def test_say_without_a_message_says_so(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    result = say(daemon)
    assert result.returncode == 2
    assert result.stderr == "musher say: give the message to post, e.g. musher say status\n"


def test_a_changed_timezone_takes_effect_on_restart_and_timers_name_it(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(window_ms=100, extra='[projects]\ntimezone = "Europe/London"\n')
    daemon.start()
    assert say(daemon, "new", "story", "Deploy").returncode == 0
    set_timer = say(daemon, "timer", "1", "+2h", "start")
    assert "(Europe/London), in 2h." in set_timer.stdout
    assert daemon.terminate() == 0

    daemon.config.write_text(daemon.config.read_text().replace("Europe/London", "Asia/Tokyo"))
    daemon.start()

    listed = say(daemon, "timers").stdout
    assert "(Asia/Tokyo) (in 1h 59m)" in listed or "(Asia/Tokyo) (in 2h)" in listed, listed
    assert "(Asia/Tokyo)" in say(daemon, "timer", "1", "+1h", "start").stdout
    with daemon.client() as client:
        [project] = client.get("/api/v1/projects").json()["projects"]
    assert project["timezone"] == "Asia/Tokyo"
