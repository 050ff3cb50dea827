"""Which rooms the bot serves, and which invites it accepts.

Served: the configured ``rooms`` (ids, or aliases resolved to ids) and direct chats — a
room outside the config with exactly two members, the other of whom is in
``allowed_users`` or ``admins``. Invites are accepted for configured rooms and for direct
invites (``is_direct``) from such a user; every other invite is declined.
"""

from __future__ import annotations

import logging

from nio import (
    AsyncClient,
    JoinedRoomsResponse,
    JoinResponse,
    MatrixRoom,
    RoomResolveAliasResponse,
)

from config.models import MatrixConfig
from transports.matrix.login import describe

log = logging.getLogger("musher.matrix")


class Rooms:
    def __init__(self, client: AsyncClient, cfg: MatrixConfig) -> None:
        self.client = client
        self.configured = set(cfg.rooms)  # as written: ids and aliases
        self.ids: set[str] = {r for r in cfg.rooms if r.startswith("!")}
        self.trusted = set(cfg.allowed_users) | set(cfg.admins or ())
        self._resolved: dict[str, str] = {}

    async def resolve(self) -> None:
        """Turn configured aliases into room ids (again: an alias may appear later)."""
        for alias in sorted(r for r in self.configured if r.startswith("#")):
            resp = await self.client.room_resolve_alias(alias)
            if isinstance(resp, RoomResolveAliasResponse):
                self.ids.add(resp.room_id)
                self._resolved[alias] = resp.room_id
            else:
                log.warning("cannot resolve room alias %s: %s", alias, describe(resp))

    async def join_configured(self) -> None:
        """Join every configured room; a room that cannot be joined is logged, not fatal."""
        resp = await self.client.joined_rooms()
        joined = set(resp.rooms) if isinstance(resp, JoinedRoomsResponse) else set()
        for room in sorted(self.configured):
            if room in joined or (room.startswith("#") and self._resolved.get(room) in joined):
                continue
            resp = await self.client.join(room)
            if isinstance(resp, JoinResponse):
                self.ids.add(resp.room_id)
                log.info("joined %s", room if room == resp.room_id else f"{room} ({resp.room_id})")
            else:
                why = describe(resp)
                log.error("cannot join configured room %s: %s (invite the bot to it)", room, why)

    def is_configured(self, room_id: str) -> bool:
        return room_id in self.ids

    def is_direct(self, room: MatrixRoom | None) -> bool:
        """A two-person room outside the config whose other member is trusted."""
        if room is None or room.room_id in self.ids or len(room.users) != 2:
            return False
        others = [u for u in room.users if u != self.client.user_id]
        return len(others) == 1 and others[0] in self.trusted

    def serves(self, room_id: str) -> bool:
        return self.is_configured(room_id) or self.is_direct(self.client.rooms.get(room_id))

    async def accepts_invite(self, room_id: str, inviter: str, is_direct: bool) -> bool:
        if not self.is_configured(room_id) and any(r.startswith("#") for r in self.configured):
            await self.resolve()
        if self.is_configured(room_id):
            return True
        return is_direct and inviter in self.trusted
