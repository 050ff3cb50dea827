"""``musher run`` as a real subprocess, driven over HTTP the way the web page and users do."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def test_a_burst_is_answered_by_one_turn(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=400).start()
    for text in ("one", "two", "three"):
        assert daemon.post("lobby", text).status_code == 202
    assert daemon.wait_for("lobby", 1) == ["echo: one | two | three"]
    time.sleep(0.8)  # nothing else follows
    assert daemon.bot_texts("lobby") == ["echo: one | two | three"]


def test_messages_during_a_turn_become_one_follow_up(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(delay=1.5, window_ms=100).start()
    daemon.post("lobby", "first")
    daemon.wait_typing("lobby")
    daemon.post("lobby", "second")
    daemon.post("lobby", "third", sender="bob")
    assert daemon.wait_for("lobby", 2) == ["echo: first", "echo: second | third"]
    time.sleep(2)
    assert len(daemon.bot_texts("lobby")) == 2


def test_stop_cancels_the_running_turn_and_drops_the_queue(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(delay=2.5, window_ms=100).start()
    daemon.post("lobby", "a long question")
    daemon.wait_typing("lobby")
    daemon.post("lobby", "queued behind it")
    daemon.post("lobby", "stop")
    assert daemon.wait_for("lobby", 1) == ["Stopped."]
    time.sleep(3.5)
    assert daemon.bot_texts("lobby") == ["Stopped."]
    daemon.post("lobby", "fresh start")
    assert daemon.wait_for("lobby", 2)[-1] == "echo: fresh start"


def test_two_rooms_answer_at_the_same_time(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(delay=3.0, window_ms=100).start()
    daemon.post("room-a", "hello a")
    daemon.wait_typing("room-a")
    daemon.post("room-b", "hello b")
    daemon.wait_typing("room-b")
    assert daemon.bot_texts("room-a") == []  # room a is still working while b started
    assert daemon.wait_for("room-a", 1) == ["echo: hello a"]
    assert daemon.wait_for("room-b", 1) == ["echo: hello b"]


def test_sigkill_after_the_202s_loses_nothing(make_daemon: MakeDaemon, store_url: str) -> None:
    store = f'\n[store]\nurl = "{store_url}"\n'  # on each backend (K1)
    daemon = make_daemon(delay=30, window_ms=1000, extra=store).start()
    daemon.post("busy", "already being answered")
    daemon.wait_typing("busy")
    daemon.post("busy", "queued behind it")
    for room in ("r1", "r2"):  # still coalescing when the daemon dies: no turn started yet
        for n in range(3):
            assert daemon.post(room, f"{room} message {n}").status_code == 202
    daemon.kill()

    daemon.config.write_text(daemon.config.read_text().replace("delay_s = 30", "delay_s = 0.0"))
    daemon.start()
    assert daemon.wait_for("busy", 2) == [
        "⚠️ musher restarted while answering; answering again.",
        "echo: already being answered | queued behind it",
    ]
    for room in ("r1", "r2"):
        replies = daemon.wait_for(room, 1)
        assert replies == [f"echo: {room} message 0 | {room} message 1 | {room} message 2"]
    daemon.terminate()  # a second restart answers nothing twice
    daemon.start()
    time.sleep(1.5)
    assert len(daemon.bot_texts("busy")) == 2
    assert len(daemon.bot_texts("r1")) == 1


def test_a_redelivered_id_is_answered_once_even_across_restarts(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    assert daemon.post("lobby", "hi", id="evt-1").status_code == 202
    assert daemon.post("lobby", "hi", id="evt-1").json()["status"] == "duplicate"
    assert daemon.wait_for("lobby", 1) == ["echo: hi"]
    assert daemon.terminate() == 0
    daemon.start()
    assert daemon.post("lobby", "hi", id="evt-1").json()["status"] == "duplicate"
    time.sleep(0.8)
    assert daemon.bot_texts("lobby") == ["echo: hi"]


BAD_POSTS: list[tuple[str, Any]] = [
    ("lobby", b"{not json"),
    ("lobby", b"[1, 2]"),
    ("lobby", {"text": "no sender"}),
    ("lobby", {"sender": "al"}),
    ("lobby", {"sender": "al", "text": "   "}),
    ("lobby", {"sender": 5, "text": "x"}),
    ("lobby", {"sender": "al", "text": "x", "id": ""}),
    ("lobby", b'{"sender": "al", "text": "' + b"x" * 1_100_000 + b'"}'),
    ("bad%20room", {"sender": "al", "text": "x"}),
    ("r" * 129, {"sender": "al", "text": "x"}),
    ("..%2F..%2Fetc", {"sender": "al", "text": "x"}),
]


def test_bad_input_gets_a_400_with_a_message_and_changes_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        for room, body in BAD_POSTS:
            kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
            headers = {"Content-Type": "application/json"}
            response = client.post(f"/api/v1/rooms/{room}/messages", headers=headers, **kwargs)
            assert response.status_code in (400, 404, 413), (room, body, response.text)
            if response.status_code != 404:
                assert response.json()["error"]
        for after in ("-1", "abc"):
            response = client.get("/api/v1/rooms/lobby/messages", params={"after": after})
            assert response.status_code == 400
        assert client.get("/readyz").status_code == 200
    assert daemon.history("lobby") == []
    assert daemon.post("lobby", "still fine").status_code == 202


def test_commands_answer_at_once_and_bad_arguments_get_usage(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=5000).start()
    daemon.post("lobby", "help")
    daemon.post("lobby", "ambient sideways")
    daemon.post("lobby", "!help stop")
    replies = daemon.wait_for("lobby", 3, timeout=3)
    assert replies[0].startswith("Commands:")
    assert replies[1] == "Usage: ambient on|off\nmode: Input should be 'on' or 'off'"
    assert replies[2].startswith("Usage: stop")


def test_token_guards_the_api_and_the_page_sends_it(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra='token = "s3cret"').start()
    with daemon.client() as client:
        assert (
            client.post(
                "/api/v1/rooms/lobby/messages", json={"sender": "a", "text": "x"}
            ).status_code
            == 401
        )
        assert client.get("/api/v1/rooms/lobby/messages").status_code == 401
        assert client.get("/healthz").status_code == 200
    with daemon.client(headers={"Authorization": "Bearer s3cret"}) as client:
        assert client.get("/api/v1/rooms/lobby/messages").status_code == 200
    assert "s3cret" not in daemon.log_text()


def test_metrics_count_what_happened(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    daemon.post("lobby", "hello", id="m1")
    daemon.post("lobby", "hello", id="m1")
    daemon.wait_for("lobby", 1)
    with daemon.client() as client:
        text = client.get("/metrics").text
    assert 'musher_inbound_total{outcome="accepted"} 1' in text
    assert 'musher_inbound_total{outcome="deduped"} 1' in text
    assert 'musher_turns_total{outcome="ok"} 1' in text
    assert "musher_batch_size_count 1" in text


def test_sigterm_shuts_down_cleanly_and_parks_a_running_turn(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(delay=30, window_ms=100).start()
    daemon.post("lobby", "slow one")
    daemon.wait_typing("lobby")
    assert daemon.terminate(timeout=10) == 0
    assert not (daemon.data_dir / "daemon.json").exists()
    daemon.config.write_text(daemon.config.read_text().replace("delay_s = 30", "delay_s = 0.0"))
    daemon.start()
    assert daemon.wait_for("lobby", 2)[-1] == "echo: slow one"


def test_musher_say_prints_the_reply(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(window_ms=100).start()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "say",
            "--config",
            str(daemon.config),
            "--room",
            "cli",
            "hi",
            "there",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hi there\n"


def test_musher_say_without_a_daemon_explains(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "say", "--data-dir", str(tmp_path), "hi"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no running daemon found" in result.stderr


def test_check_reports_the_key_path_of_a_broken_file(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[dispatcher]\ncoalesce_window = 10\n[http]\nport = "eighty"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    hint = "dispatcher.coalesce_window: unknown key (did you mean 'coalesce_window_ms'?)"
    assert any(hint in line for line in lines)
    assert any("http.port:" in line for line in lines)


def test_check_prints_the_effective_settings_with_secrets_redacted(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[http]\ntoken = "hunter2"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "[dispatcher]" in result.stdout and "coalesce_window_ms = 1500" in result.stdout


def test_a_public_host_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(f'[daemon]\ndata_dir = "{tmp_path}/d"\n[http]\nhost = "0.0.0.0"\nport = 0\n')
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "http.host" in result.stderr and "token" in result.stderr


def test_the_page_is_served(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    with daemon.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert client.get("/static/app.js").status_code == 200


def test_a_transport_that_cannot_start_says_why(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text(
        f'[daemon]\ndata_dir = "{tmp_path}/d"\n[http]\nport = 0\n'
        '[transports.discord]\nenabled = true\nbot_token = "x"\n'
        'api_base_url = "http://127.0.0.1:9/api/v10"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "transports.discord: cannot reach the Discord API at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_room_settings_are_signed_ops_that_audit_verify_checks(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    daemon.post("lobby", "ambient on")
    assert daemon.wait_for("lobby", 1)[0].startswith("Ambient mode on")
    assert daemon.terminate() == 0
    verify = [sys.executable, "-m", "bot", "audit", "verify", "--config", str(daemon.config)]
    result = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 ops")  # the default project's, then the room's

    with sqlite3.connect(daemon.data_dir / "musher.db") as conn:
        triggers = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE ops SET payload = replace(payload, 'true', 'false')")
    result = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "op 2 " in result.stdout and "bad signature" in result.stdout


def test_the_pages_typing_holds_a_burst_and_stopping_answers_before_the_window(
    make_daemon: MakeDaemon,
) -> None:
    """D1 on the web console: a plain window of 30 s, a quiet time of 2 s (long enough that
    a loaded machine handles the typing within it)."""
    daemon = make_daemon(window_ms=30_000, max_wait_ms=40_000, quiet_ms=2_000).start()

    def typing(active: bool, sender: str = "alice") -> int:
        with daemon.client() as client:
            body = {"sender": sender, "typing": active}
            return client.post("/api/v1/rooms/lobby/typing", json=body).status_code

    assert typing(True) == 202
    assert typing(False) == 202
    daemon.post("lobby", "one")
    assert typing(True) == 202
    time.sleep(6)  # three quiet times: only the typing keeps the batch open
    assert typing(False) == 202
    daemon.post("lobby", "two")
    # answered two seconds after "two", while the 30 s window would still be open
    assert daemon.wait_for("lobby", 1, timeout=15) == ["echo: one | two"]

    with daemon.client() as client:
        for body in ({"sender": "alice"}, {"sender": "alice", "typing": "yes"}, {"typing": 1}):
            response = client.post("/api/v1/rooms/lobby/typing", json=body)
            assert response.status_code == 400 and response.json()["error"]
        text = client.post(
            "/api/v1/rooms/lobby/typing", content=b'{"typing": true}',
            headers={"Content-Type": "text/plain"},
        )  # fmt: skip
        assert text.status_code == 415
