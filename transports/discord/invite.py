"""The OAuth2 URL that adds musher's bot to a server: ``musher discord-invite``."""

from __future__ import annotations

from urllib.parse import urlencode

import discord

from config.models import DiscordConfig

SCOPES = ("bot", "applications.commands")
# What the bot does in a channel: see it, answer in it and in its threads (typing included).
PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True
)
AUTHORIZE = "https://discord.com/oauth2/authorize"


def invite_url(config: DiscordConfig) -> str:
    """The invite URL for ``config``'s application; raises ``ValueError`` without its id."""
    if not config.application_id:
        raise ValueError(
            "set [transports.discord] application_id (Developer Portal → General Information)"
        )
    query = {
        "client_id": config.application_id,
        "scope": " ".join(SCOPES),
        "permissions": str(PERMISSIONS.value),
    }
    return f"{AUTHORIZE}?{urlencode(query)}"
