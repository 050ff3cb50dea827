"""Matrix encryption switches: the extra is required for ``encryption = true``; with it
off, nio's key store is never opened; an unreadable room is told at most once an hour."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, MegolmEvent

from config.errors import PermanentError
from config.models import MatrixConfig
from transports.matrix import client as matrix_client
from transports.matrix.client import UNREADABLE, MatrixTransport, create
from transports.matrix.login import Session, restore

CFG = {"enabled": True, "homeserver": "http://127.0.0.1:1", "user_id": "@bot:x"}


def context(tmp_path: Path, **keys: Any) -> Any:
    cfg = MatrixConfig(**CFG, password="pw", **keys)
    settings = SimpleNamespace(transports=SimpleNamespace(matrix=cfg))
    return SimpleNamespace(settings=settings, data_dir=tmp_path, metrics=None, state=None)


def test_encryption_without_the_extra_refuses_to_start_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "vodozemac", None)  # import vodozemac → ImportError
    with pytest.raises(PermanentError, match=r"pip install 'musher\[e2e\]'") as failed:
        create(context(tmp_path, encryption=True))
    assert "'vodozemac'" in str(failed.value)
    assert not (tmp_path / "matrix" / "store").exists()


def test_without_encryption_no_key_store_is_opened(tmp_path: Path) -> None:
    transport = create(context(tmp_path))
    assert transport.client.config.encryption_enabled is False
    assert transport.keys is None
    restore(transport.client, Session("@bot:x", "", "token"))  # a token without a device
    assert (transport.client.user_id, transport.client.access_token) == ("@bot:x", "token")
    assert transport.client.olm is None and transport.client.store is None
    assert not (tmp_path / "matrix" / "store").exists()


def test_with_encryption_the_store_is_the_sessions_device(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
    client = AsyncClient("http://127.0.0.1:1", "@bot:x", store_path=str(store), config=config)
    with pytest.raises(PermanentError, match="needs a device"):
        restore(client, Session("@bot:x", "", "token"))
    restore(client, Session("@bot:x", "DEVICE1", "token"))
    assert client.olm is not None and client.device_id == "DEVICE1"
    assert [p.name for p in store.iterdir()] == ["@bot:x_DEVICE1.db"]


async def test_an_unreadable_room_is_told_at_most_once_an_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = create(context(tmp_path, encryption=True))
    assert isinstance(transport, MatrixTransport) and transport.keys is not None
    sent: list[tuple[str, str]] = []

    async def send(room_id: str, content: dict[str, Any], tx_id: str) -> str:
        sent.append((room_id, content["body"]))
        return "$e"

    monkeypatch.setattr(transport, "_send", send)
    now = [1_000_000.0]
    monkeypatch.setattr(matrix_client.time, "time", lambda: now[0])
    event = MegolmEvent.from_dict(
        {
            "type": "m.room.encrypted",
            "event_id": "$x",
            "sender": "@alice:x",
            "origin_server_ts": 1,
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "c",
                "sender_key": "k",
                "session_id": "s",
                "device_id": "D",
            },
        }
    )
    for _ in range(3):
        await transport._unreadable("!a:x", event)
    await transport._unreadable("!b:x", event)
    now[0] += 3600
    await transport._unreadable("!a:x", event)
    assert sent == [("!a:x", UNREADABLE), ("!b:x", UNREADABLE), ("!a:x", UNREADABLE)]
    await transport.client.close()
