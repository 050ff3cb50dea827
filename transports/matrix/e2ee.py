"""End-to-end encryption (``encryption = true``, with the ``musher[e2e]`` extra installed).

nio does the cryptography. With its key store in ``<data_dir>/matrix/store`` (one SQLite
file per device: the device of ``session.json``, so the same keys across restarts) it
decrypts what a sync brings and encrypts what the bot sends to an encrypted room.
:class:`Keys` keeps the keys moving between syncs, as nio's own ``sync_forever`` would:
upload this device's keys when the server runs low, query the devices of new room members,
claim one-time keys, send queued to-device messages. The bot trusts every device
(``ignore_unverified_devices``); it does no interactive verification.

The sync token stays musher's (stored after the batch is journalled): nio is configured
with ``store_sync_tokens = False``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path

import aiohttp
from nio import AsyncClient, ErrorResponse

from config.errors import PermanentError

log = logging.getLogger("musher.matrix")
logging.getLogger("peewee").setLevel(logging.WARNING)  # nio's store: every query, keys included

# What ``matrix-nio[e2e]`` adds; nio itself only checks the first one.
EXTRA_MODULES = ("vodozemac", "peewee", "cachetools", "atomicwrites")
INSTALL = "pip install 'musher[e2e]' (from a checkout: uv sync --extra e2e)"


def missing_module() -> str | None:
    """The first module of the E2EE extra that cannot be imported; None when all can."""
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return name
    return None


def require() -> None:
    """Refuse ``encryption = true`` when the extra is not installed, saying how to get it."""
    name = missing_module()
    if name is not None:
        raise PermanentError(
            f"matrix: encryption = true needs the end-to-end encryption extra, which is not"
            f" installed (no module {name!r}); install it with {INSTALL}, or set"
            " encryption = false"
        )


def store_path(data_dir: Path) -> Path:
    """Where nio keeps the device's keys: created if missing, for the owner only."""
    path = data_dir / "matrix" / "store"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class Keys:
    """Key upkeep for an encrypting client; every step is skipped when nio needs none."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._lock = asyncio.Lock()  # nio raises when asked for a query it no longer needs

    async def maintain(self) -> None:
        """Upload, query and claim keys as needed, and send queued to-device messages.

        Failures are logged: the next sync tries again.
        """
        client = self.client
        async with self._lock:
            try:
                if client.should_upload_keys:
                    self._check("uploading keys", await client.keys_upload())
                if client.should_query_keys:
                    self._check("querying keys", await client.keys_query())
                if client.should_claim_keys:
                    users = client.get_users_for_key_claiming()
                    self._check("claiming keys", await client.keys_claim(users))
                await client.send_to_device_messages()
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                log.warning("key upkeep failed (%s); trying again after the next sync", err)

    async def before_send(self, room_id: str) -> None:
        """Learn the devices of a room's new members before encrypting to it."""
        room = self.client.rooms.get(room_id)
        if room is None or not room.encrypted:
            return
        async with self._lock:
            if not self.client.should_query_keys:
                return
            try:
                self._check("querying keys", await self.client.keys_query())
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                log.warning("querying keys before sending to %s failed: %s", room_id, err)

    @staticmethod
    def _check(what: str, resp: object) -> None:
        if isinstance(resp, ErrorResponse):
            log.warning("%s failed: %s", what, resp)
