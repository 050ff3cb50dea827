"""Logging the bot in, once per data dir: the device survives restarts.

The session (``user_id``, ``device_id``, ``access_token``) lives in
``<data_dir>/matrix/session.json`` (mode 0600). A start prefers that saved session, then
the configured ``access_token``, then a password login that reuses the saved device id, so
the bot stays one device — and, with encryption on, keeps the keys nio stored for that
device. When the homeserver rejects a token later (``M_UNKNOWN_TOKEN``),
:meth:`Login.renew` logs in again with the password.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nio import AsyncClient, LoginResponse, WhoamiResponse

from config.errors import PermanentError
from config.models import MatrixConfig

log = logging.getLogger("musher.matrix")

UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    device_id: str
    access_token: str


def load_session(path: Path) -> Session | None:
    try:
        data = json.loads(path.read_text())
        return Session(str(data["user_id"]), str(data["device_id"]), str(data["access_token"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable %s", path)
        return None


def save_session(path: Path, session: Session) -> None:
    """Write ``session`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(session), f)
    tmp.replace(path)


def describe(resp: Any) -> str:
    """A nio error response as the homeserver said it: ``M_FORBIDDEN Bad login (HTTP 403)``."""
    status = resp.transport_response.status if resp.transport_response else None
    said = " ".join(str(p) for p in (resp.status_code, resp.message) if p) or "no reason given"
    return f"{said} (HTTP {status})" if status else said


def restore(client: AsyncClient, session: Session) -> None:
    """Use ``session`` on ``client``. With encryption on, nio opens the device's key store
    (which needs the device id); with it off, no store is touched even when the E2EE extra
    is installed."""
    if not client.config.encryption_enabled:
        client.user_id = session.user_id
        client.device_id = session.device_id
        client.access_token = session.access_token
        return
    if not session.device_id:
        raise PermanentError(
            f"matrix: encryption = true needs a device, and the access token of"
            f" {session.user_id} has none; log in with a password instead"
        )
    client.restore_login(session.user_id, session.device_id, session.access_token)


class Login:
    """Gets ``client`` a working access token and keeps the session file current."""

    def __init__(self, client: AsyncClient, cfg: MatrixConfig, path: Path) -> None:
        self.client = client
        self.cfg = cfg
        self.path = path
        self.user_id = cfg.user_id or ""

    async def start(self) -> Session:
        saved = load_session(self.path)
        if saved and saved.user_id != self.user_id:
            saved = None
        configured = self.cfg.access_token.get_secret_value() if self.cfg.access_token else None
        if saved and configured is None:
            session = await self._check(saved.access_token)
            if session:
                return session
            log.info("the saved login of %s was rejected; logging in again", self.user_id)
        if configured:
            session = await self._check(configured)
            if session:
                return session
            if self.cfg.password is None:
                raise PermanentError(
                    f"matrix: the access_token of {self.user_id} was rejected by "
                    f"{self.cfg.homeserver} ({UNKNOWN_TOKEN}); set a new one or a password"
                )
            log.info("the configured access_token was rejected; using the password")
        return await self._password(saved.device_id if saved else None)

    async def renew(self) -> bool:
        """Log in again after the homeserver rejected the token; False without a password."""
        if self.cfg.password is None:
            log.error(
                "the access token of %s expired and no password is configured;"
                " set a new access_token",
                self.user_id,
            )
            return False
        log.warning("the access token of %s expired; logging in again", self.user_id)
        await self._password(self.client.device_id or None)
        if self.client.olm is not None:  # a logout deleted the device's keys on the server:
            self.client.olm.account.shared = False  # upload them again (same keys) next sync
        return True

    async def _check(self, token: str) -> Session | None:
        """Use ``token`` if the homeserver accepts it; None when it says it is unknown."""
        self.client.access_token = token
        resp = await self.client.whoami()
        if isinstance(resp, WhoamiResponse):
            if resp.user_id != self.user_id:
                raise PermanentError(
                    f"matrix: the access token belongs to {resp.user_id}, not {self.user_id}"
                )
            session = Session(resp.user_id, resp.device_id or "", token)
            restore(self.client, session)
            save_session(self.path, session)
            return session
        self.client.access_token = ""
        status = resp.transport_response.status if resp.transport_response else None
        if resp.status_code == UNKNOWN_TOKEN or status == 401:
            return None
        raise PermanentError(
            f"matrix: checking the login of {self.user_id} failed: {describe(resp)}"
        )

    async def _password(self, device_id: str | None) -> Session:
        if self.cfg.password is None:
            raise PermanentError(f"matrix: no password configured to log in as {self.user_id}")
        self.client.user = self.user_id
        self.client.device_id = device_id or ""
        resp = await self.client.login(
            self.cfg.password.get_secret_value(), device_name=self.cfg.device_name
        )
        if not isinstance(resp, LoginResponse):
            raise PermanentError(f"matrix: login as {self.user_id} failed: {describe(resp)}")
        session = Session(resp.user_id, resp.device_id, resp.access_token)
        save_session(self.path, session)
        log.info("logged in as %s (device %s)", session.user_id, session.device_id)
        return session
