"""Run ``musher run`` as a real subprocess and talk to it over HTTP, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

BASE_CONFIG = """
[daemon]
data_dir = "{data_dir}"
log_level = "DEBUG"

[http]
port = 0
{http_extra}

[llm]
provider = "echo"

[llm.echo]
delay_s = {delay}

[dispatcher]
coalesce_window_ms = {window_ms}
max_wait_ms = {max_wait_ms}
coalesce_quiet_ms = {quiet_ms}
busy_mode = "{busy_mode}"
"""


class DaemonProcess:
    """One daemon subprocess with its own data dir; restartable; always stopped by the test."""

    def __init__(
        self,
        tmp: Path,
        delay: float = 0.0,
        window_ms: int = 300,
        extra: str = "",
        http_extra: str = "",
        max_wait_ms: int | None = None,
        quiet_ms: int = 300,
        busy_mode: str = "collect",
        agents: bool = False,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.data_dir = tmp / "data"
        self.config = tmp / "bot.toml"
        self.log = tmp / "daemon.log"
        self.config.write_text(
            BASE_CONFIG.format(
                data_dir=self.data_dir,
                delay=delay,
                window_ms=window_ms,
                max_wait_ms=max_wait_ms or max(3000, window_ms),
                quiet_ms=quiet_ms,
                busy_mode=busy_mode,
                http_extra=http_extra,
            )
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.agents = agents  # off unless asked: the default project is the test's checkout
        self.url = ""
        self.token: str | None = None  # sent by client(), post(), history()

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        info = self.data_dir / "daemon.json"
        if info.exists():
            info.unlink()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MUSHER_CONFIG", None)
        if not self.agents:
            env["MUSHER_AGENTS__MAX_AGENTS"] = "0"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}")
            if info.exists():
                self.url = json.loads(info.read_text())["url"]
                return self
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of the daemon; it sends :attr:`token` unless ``headers`` say otherwise."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kwargs.pop("headers", {}))
        kwargs.setdefault("timeout", 10)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def post(self, room: str, text: str, sender: str = "alice", **extra: Any) -> httpx.Response:
        with self.client() as client:
            return client.post(
                f"/api/v1/rooms/{room}/messages", json={"sender": sender, "text": text, **extra}
            )

    def history(self, room: str) -> list[dict[str, Any]]:
        with self.client() as client:
            response = client.get(f"/api/v1/rooms/{room}/messages", params={"after": 0})
            response.raise_for_status()
            messages: list[dict[str, Any]] = response.json()["messages"]
            return messages

    def items(self) -> list[dict[str, Any]]:
        """The items of the daemon's one project, as the API lists them."""
        with self.client() as client:
            [project] = client.get("/api/v1/projects").json()["projects"]
            response = client.get(f"/api/v1/projects/{project['name']}/items")
            found: list[dict[str, Any]] = response.json()["items"]
            return found

    def bot_texts(self, room: str) -> list[str]:
        return [m["text"] for m in self.history(room) if m["role"] == "bot"]

    def wait_for(self, room: str, count: int, timeout: float = 15.0) -> list[str]:
        """Wait until ``room`` has at least ``count`` bot messages; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            texts = self.bot_texts(room)
            if len(texts) >= count or time.monotonic() > deadline:
                return texts
            time.sleep(0.05)

    def events(self, room: str, after: int | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ``(event, data)`` from the room's SSE stream; closing the generator closes it."""
        params = {} if after is None else {"after": after}
        with (
            httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", f"/api/v1/rooms/{room}/events", params=params) as stream,
        ):
            kind, data = "message", ""
            for line in stream.iter_lines():
                if line.startswith(":"):
                    yield "comment", None
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif not line and data:
                    yield kind, json.loads(data)
                    kind, data = "message", ""

    def wait_typing(self, room: str, timeout: float = 10.0) -> None:
        """Block until the bot is visibly working in ``room``."""
        deadline = time.monotonic() + timeout
        for kind, data in self.events(room):
            if kind == "typing" and data["active"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no typing indicator in {room}")


def room_holder(url: str, room: str) -> str | None:
    """The key of the daemon holding web ``room``'s lease on the PostgreSQL at ``url``."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT owner FROM leases WHERE name = %s AND expires_at > %s",
            (f"room:web:{room}", time.time()),
        ).fetchone()
    return None if row is None else str(row[0])
