"""A real Synapse homeserver for the Matrix tests, and a real nio client for its humans.

:func:`start_synapse` runs Synapse (installed by ``scripts/install-synapse`` into its own
venv, ``.cache/synapse``, or ``$SYNAPSE_PYTHON``) on 127.0.0.1, sqlite, with raised rate
limits; :func:`register` creates users through the shared-secret admin API;
:class:`Human` is a logged-in ``nio.AsyncClient`` with helpers to make rooms, talk and
read what the bot said — with end-to-end encryption when given a key store.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nio import (
    AsyncClient,
    AsyncClientConfig,
    MessageDirection,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomTypingResponse,
    SyncResponse,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED_SECRET = "musher-test-shared-secret"
_RC = "{per_second: 10000, burst_count: 10000}"


class SynapseMissing(RuntimeError):
    """Synapse is not installed and could not be installed."""


def synapse_python() -> Path:
    """The interpreter of the Synapse venv, installed by ``scripts/install-synapse`` (a no-op
    when the pinned version is there) unless ``$SYNAPSE_PYTHON`` names one."""
    configured = os.environ.get("SYNAPSE_PYTHON")
    if configured:
        return Path(configured)
    python = ROOT / ".cache" / "synapse" / "bin" / "python"
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-synapse")], capture_output=True, text=True
    )
    if done.returncode != 0 or not python.exists():
        raise SynapseMissing(f"scripts/install-synapse failed:\n{done.stderr[-2000:]}")
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Synapse:
    url: str
    server_name: str
    directory: Path


@contextmanager
def start_synapse(directory: Path) -> Iterator[Synapse]:
    """Run a fresh homeserver in ``directory`` until the block ends."""
    python = synapse_python()
    port = _free_port()
    config = directory / "homeserver.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        server_name: localhost
        pid_file: {directory}/homeserver.pid
        listeners:
          - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: false,
              x_forwarded: false, resources: [{{names: [client], compress: false}}]}}
        database: {{name: sqlite3, args: {{database: {directory}/homeserver.db}}}}
        media_store_path: {directory}/media
        signing_key_path: {directory}/signing.key
        registration_shared_secret: {SHARED_SECRET}
        macaroon_secret_key: musher-test-macaroon
        form_secret: musher-test-form
        report_stats: false
        trusted_key_servers: []
        suppress_key_server_warning: true
        presence: {{enabled: false}}
        rc_message: {_RC}
        rc_registration: {_RC}
        rc_login: {{address: {_RC}, account: {_RC}, failed_attempts: {_RC}}}
        rc_joins: {{local: {_RC}, remote: {_RC}}}
        rc_invites: {{per_room: {_RC}, per_user: {_RC}, per_issuer: {_RC}}}
        rc_admin_redaction: {_RC}
        """)
    )
    subprocess.run(
        [str(python), "-m", "synapse.app.homeserver", "-c", str(config), "--generate-keys"],
        check=True,
        capture_output=True,
    )
    log_path = directory / "synapse.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError("synapse exited:\n" + log_path.read_text()[-3000:])
            try:
                if httpx.get(url + "/health", timeout=1).text == "OK":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("synapse did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield Synapse(url, "localhost", directory)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def register(hs: Synapse, localpart: str, password: str, admin: bool = False) -> dict[str, Any]:
    """Create a user with the shared-secret admin API; returns its login (token, device)."""
    nonce = httpx.get(hs.url + "/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    kind = b"admin" if admin else b"notadmin"
    mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), kind]))
    response = httpx.post(
        hs.url + "/_synapse/admin/v1/register",
        json={
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        },
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Bot:
    """A freshly registered bot account and the ``[transports.matrix]`` table for it."""

    def __init__(self, hs: Synapse) -> None:
        self.localpart = unique("bot")
        self.password = "pw-" + self.localpart
        self.user_id = register(hs, self.localpart, self.password)["user_id"]
        self.hs = hs

    def config(self, rooms: list[str], homeserver: str = "", **keys: Any) -> str:
        table = {
            "enabled": True,
            "homeserver": homeserver or self.hs.url,
            "user_id": self.user_id,
            "password": self.password,
            "rooms": rooms,
            **keys,
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        return "\n[transports.matrix]\n" + "\n".join(lines) + "\n"


class Human:
    """A person on the homeserver, driving a real ``nio.AsyncClient``; with a ``store`` the
    client encrypts and decrypts (it syncs before talking or reading, to learn keys)."""

    def __init__(self, hs: Synapse, localpart: str, store: Path | None = None) -> None:
        login = register(hs, localpart, "pw-" + localpart)
        self.user_id: str = login["user_id"]
        self.encrypted = store is not None
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
            config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
            self.client = AsyncClient(hs.url, self.user_id, store_path=str(store), config=config)
        else:
            self.client = AsyncClient(hs.url, self.user_id)
        self.client.restore_login(self.user_id, login["device_id"], login["access_token"])
        self.access_token: str = login["access_token"]

    async def catch_up(self) -> None:
        """Sync once and do the key upkeep an E2EE client does between syncs."""
        resp = await self.client.sync(timeout=0, full_state=not self.client.next_batch)
        assert isinstance(resp, SyncResponse), resp
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()
        if self.client.should_claim_keys:
            await self.client.keys_claim(self.client.get_users_for_key_claiming())
        await self.client.send_to_device_messages()

    async def room(self, invite: list[str], direct: bool = False, **extra: Any) -> str:
        resp = await self.client.room_create(invite=invite, is_direct=direct, **extra)
        assert isinstance(resp, RoomCreateResponse), resp
        return str(resp.room_id)

    async def say(self, room_id: str, text: str, **content: Any) -> str:
        body = {"msgtype": "m.text", "body": text, **content}
        if self.encrypted:
            await self.catch_up()
        resp = await self.client.room_send(
            room_id, "m.room.message", body, ignore_unverified_devices=True
        )
        return str(resp.event_id)

    async def typing(self, room_id: str, active: bool) -> None:
        """Say that this person is typing (for 30 s, as Element does) or stopped."""
        resp = await self.client.room_typing(room_id, typing_state=active, timeout=30_000)
        assert isinstance(resp, RoomTypingResponse), resp

    async def events(self, room_id: str) -> list[dict[str, Any]]:
        """Every event of the room (up to 500), oldest first, as raw dicts (decrypted when
        the keys are known)."""
        if self.encrypted:
            await self.catch_up()
        resp = await self.client.room_messages(
            room_id, start="", direction=MessageDirection.back, limit=500
        )
        assert isinstance(resp, RoomMessagesResponse), resp
        return [ev.source for ev in reversed(resp.chunk)]

    async def said_by(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        """The contents of the messages ``sender`` posted in the room, oldest first."""
        return [
            ev["content"]
            for ev in await self.events(room_id)
            if ev.get("type") == "m.room.message" and ev.get("sender") == sender
        ]

    async def wait_for(
        self, room_id: str, sender: str, count: int, within: float = 20.0
    ) -> list[str]:
        """Wait until ``sender`` has posted at least ``count`` messages; return their bodies."""
        deadline = time.monotonic() + within
        while True:
            bodies = [c.get("body", "") for c in await self.said_by(room_id, sender)]
            if len(bodies) >= count or time.monotonic() > deadline:
                return bodies
            await asyncio.sleep(0.2)

    async def wait_typing(self, rooms: list[str], user: str, within: float = 20.0) -> None:
        """Sync until ``user`` is typing in every room of ``rooms`` at the same time."""
        since = None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            resp = await self.client.sync(timeout=1000, since=since)
            assert isinstance(resp, SyncResponse), resp
            since = resp.next_batch
            known = self.client.rooms
            if all(r in known and user in known[r].typing_users for r in rooms):
                return
        raise AssertionError(f"{user} was not typing in {rooms} at the same time")

    async def membership(self, room_id: str, user: str, within: float = 15.0) -> str:
        """Wait until ``user`` has answered the invite to ``room_id``; return the membership."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            state = [
                ev
                for ev in await self.events(room_id)
                if ev.get("type") == "m.room.member" and ev.get("state_key") == user
            ]
            if state and state[-1]["content"]["membership"] != "invite":
                return str(state[-1]["content"]["membership"])
            await asyncio.sleep(0.2)
        raise AssertionError(f"{user} never answered the invite to {room_id}")

    async def close(self) -> None:
        await self.client.close()
