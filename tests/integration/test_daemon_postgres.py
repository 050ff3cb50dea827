"""``musher run`` on PostgreSQL (``[store] url``, K1): the same contracts as on SQLite, seen
from outside: answered once across restarts, a node with a heartbeat, audit verify on the
store it used. (SIGKILL losing nothing runs on both backends in ``test_daemon.py``.)"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import psycopg

from tests.fakes.postgres import Postgres
from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]


def on_postgres(make_daemon: MakeDaemon, url: str, **kwargs: object) -> DaemonProcess:
    return make_daemon(extra=f'\n[store]\nurl = "{url}"\n', **kwargs)


def test_a_daemon_on_postgres_answers_once_and_its_log_verifies(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    url = postgres.new_database()
    daemon = on_postgres(make_daemon, url, window_ms=400).start()
    with daemon.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["components"]["store"] == "ok; postgresql"
    with psycopg.connect(url) as conn:  # the daemon is a node with a heartbeat (K2)
        [(role, beat)] = conn.execute("SELECT role, heartbeat_at FROM nodes").fetchall()
    assert role == "daemon" and abs(beat - time.time()) < 60
    for text in ("one", "two", "three"):
        assert daemon.post("lobby", text, id=f"m-{text}").status_code == 202
    assert daemon.post("lobby", "one", id="m-one").json()["status"] == "duplicate"
    assert daemon.wait_for("lobby", 1) == ["echo: one | two | three"]
    daemon.post("lobby", "ambient on")
    assert daemon.wait_for("lobby", 2)[1].startswith("Ambient mode on")
    assert daemon.terminate() == 0
    assert not (daemon.data_dir / "musher.db").exists()  # everything went to PostgreSQL

    verify = [sys.executable, "-m", "bot", "audit", "verify", "--config", str(daemon.config)]
    result = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 ops")  # the default project's, then the room's

    daemon.start()  # a restart answers nothing twice and still knows the ids
    assert daemon.post("lobby", "one", id="m-one").json()["status"] == "duplicate"
    time.sleep(0.8)
    assert len(daemon.bot_texts("lobby")) == 2
