"""The Slack app manifest ``musher slack-manifest`` prints, and the slash-command aliases.

One alias per registry command — ``/musher-status``, ``/musher-timer-cancel`` — maps to the
command's words, so ``/musher-status 12`` runs ``status 12`` exactly as ``/musher status 12``
does. The transport and the manifest derive the aliases from the same registry.
"""

from __future__ import annotations

from typing import Any

from bot.commands.registry import Registry
from config.models import SlackConfig

BOT_SCOPES = (
    "app_mentions:read",  # app_mention events
    "channels:history",  # message.channels events; conversations.history (send retries)
    "chat:write",  # chat.postMessage
    "commands",  # slash commands
    "groups:history",  # private channels
    "im:history",  # direct messages
    "mpim:history",  # group direct messages
)
BOT_EVENTS = ("app_mention", "message.channels", "message.groups", "message.im", "message.mpim")
SLASH_NAME_MAX = 32  # Slack's limit on a command's length, slash included


def aliases(registry: Registry, command: str) -> dict[str, str]:
    """``{"/musher-status": "status", "/musher-timer-cancel": "timer cancel", …}``.

    Names too long for Slack are left out (the command itself still reaches them).
    """
    found: dict[str, str] = {}
    for cmd in registry.commands():
        slash = f"{command}-{cmd.name.replace(' ', '-').replace('_', '-')}".lower()
        if len(slash) <= SLASH_NAME_MAX:
            found[slash] = cmd.name
    return found


def manifest(config: SlackConfig, registry: Registry, public_url: str | None) -> dict[str, Any]:
    """The app manifest for ``config``'s mode.

    In http mode ``public_url`` (where Slack reaches the daemon) is required: every slash
    command and the event subscription point at ``<public_url>/webhooks/slack``.
    """
    http = config.mode == "http"
    if http and not public_url:
        raise ValueError("http mode needs the daemon's public URL (--url https://…)")
    request_url = f"{public_url.rstrip('/')}/webhooks/slack" if http and public_url else None
    commands = [
        _slash(config.command, "Run a musher command, or ask musher anything", "status | help")
    ]
    by_name = {c.name: c for c in registry.commands()}
    for slash, name in aliases(registry, config.command).items():
        cmd = by_name[name]
        hint = cmd.usage[len(cmd.name) :].strip()
        commands.append(_slash(slash, cmd.summary, hint))
    if request_url:
        for entry in commands:
            entry["url"] = request_url
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if request_url:
        events["request_url"] = request_url
    return {
        "display_information": {
            "name": "musher",
            "description": "Drive your work items from Slack",
        },
        "features": {
            "app_home": {"messages_tab_enabled": True, "messages_tab_read_only_enabled": False},
            "bot_user": {"display_name": "musher", "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": {"is_enabled": False},
            "org_deploy_enabled": False,
            "socket_mode_enabled": not http,
            "token_rotation_enabled": False,
        },
    }


def _slash(command: str, description: str, hint: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "command": command,
        "description": description[:100],
        "should_escape": False,
    }
    if hint:
        entry["usage_hint"] = hint[:1000]
    return entry
