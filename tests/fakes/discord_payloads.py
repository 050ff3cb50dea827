"""What Discord sends and expects: users, guilds, messages, and signed interactions.

The interaction signature is computed here from Discord's published scheme (Ed25519 over
``timestamp + body``), independently of ``transports.discord.verify``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from nacl.signing import SigningKey

_ids = itertools.count(int(time.time() * 1000) << 22)


def snowflake() -> str:
    return str(next(_ids))


def user(uid: str, name: str, bot: bool = False, global_name: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": uid,
        "username": name,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": None,
    }
    if bot:
        found["bot"] = True
    return found


def member() -> dict[str, Any]:
    return {
        "roles": [],
        "joined_at": "2026-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def message(author: dict[str, Any], content: str, channel_id: str, guild_id: str) -> dict[str, Any]:
    """A MESSAGE_CREATE / create-message payload."""
    return {
        "id": snowflake(),
        "channel_id": channel_id,
        "guild_id": guild_id,
        "author": author,
        "content": content,
        "timestamp": "2026-01-01T00:00:00.000000+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "components": [],
    }


def guild(
    guild_id: str,
    channel_id: str,
    thread_id: str,
    role_id: str,
    owner: dict[str, Any],
    bot: dict[str, Any],
) -> dict[str, Any]:
    """GUILD_CREATE: one text channel, one thread in it, the bot's managed role."""
    everyone = {"id": guild_id, "name": "@everyone", "permissions": "1071698660929"}
    bot_role = {
        "id": role_id,
        "name": "musher",
        "permissions": "0",
        "managed": True,
        "tags": {"bot_id": bot["id"]},
    }
    roles = [
        {"position": i, "color": 0, "hoist": False, "managed": False, "mentionable": False, **r}
        for i, r in enumerate((everyone, bot_role))
    ]
    channel = {"id": channel_id, "type": 0, "name": "general", "position": 0}
    thread = thread_of(thread_id, channel_id, guild_id, owner["id"])
    return {
        "id": guild_id,
        "name": "Test Guild",
        "owner_id": owner["id"],
        "unavailable": False,
        "member_count": 2,
        "large": False,
        "features": [],
        "emojis": [],
        "stickers": [],
        "roles": roles,
        "members": [{**member(), "user": bot, "roles": [role_id]}],
        "channels": [{**channel, "permission_overwrites": [], "guild_id": guild_id}],
        "threads": [thread],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "joined_at": "2026-01-01T00:00:00+00:00",
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "system_channel_flags": 0,
        "afk_timeout": 300,
    }


def thread_of(thread_id: str, channel_id: str, guild_id: str, owner_id: str) -> dict[str, Any]:
    """A public thread in ``channel_id``."""
    return {
        "id": thread_id,
        "type": 11,
        "name": "a thread",
        "parent_id": channel_id,
        "guild_id": guild_id,
        "owner_id": owner_id,
        "member_count": 2,
        "message_count": 1,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2026-01-01T00:00:00+00:00",
            "locked": False,
        },
    }


def signed(key: SigningKey, body: bytes, ts: int | None = None) -> dict[str, str]:
    """The headers Discord sends with an interaction: Ed25519 over ``timestamp + body``."""
    stamp = str(int(time.time()) if ts is None else ts)
    signature = key.sign(stamp.encode() + body).signature.hex()
    return {
        "Content-Type": "application/json",
        "X-Signature-Ed25519": signature,
        "X-Signature-Timestamp": stamp,
    }
