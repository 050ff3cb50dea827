"""Outbound to Discord: create-message that never posts twice, and the typing indicator.

Every message carries a nonce derived from its ``Reply.key`` with ``enforce_nonce: true``:
Discord then returns the message it already created for that nonce (within a few minutes)
instead of creating a second one. So a create retried after a 5xx or a dropped connection
— by discord.py itself (it retries 500/502/504/524) or by :func:`create_message` — shows
once. 429s are discord.py's: it waits ``retry_after`` per bucket (and globally when Discord
says so) before anything else goes to that bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import aiohttp
import discord
from discord.http import Route

from bot.metrics import Metrics
from config.errors import PermanentError, TransientError

log = logging.getLogger("musher.discord")

ATTEMPTS = 4
BACKOFF_S = (1.0, 2.0, 4.0)
NONCE_LENGTH = 25  # Discord's limit
_AMBIGUOUS = (aiohttp.ClientError, TimeoutError, discord.DiscordServerError)
NO_MENTIONS: dict[str, Any] = {"parse": []}  # replies never ping @everyone or roles
EPHEMERAL = 64  # message flag: only the person who asked sees it


def nonce(prefix: str, key: str) -> str:
    """A stable nonce for the chunk ``key``; ``prefix`` is this data dir's own (random)."""
    return hashlib.sha256(f"{prefix}:{key}".encode()).hexdigest()[:NONCE_LENGTH]


async def create_message(
    http: discord.http.HTTPClient,
    channel_id: str,
    content: str,
    nonce_value: str,
    metrics: Metrics,
) -> str:
    """Post ``content`` to ``channel_id`` once; returns the message id.

    Raises :class:`PermanentError` when Discord refuses (missing access, unknown channel)
    and :class:`TransientError` when it stayed unavailable. On cancel at most one request is
    in flight, and its retry (by anyone, with the same nonce) cannot post a second copy.
    """
    body = {
        "content": content,
        "nonce": nonce_value,
        "enforce_nonce": True,
        "allowed_mentions": NO_MENTIONS,
    }
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
    for attempt, delay in enumerate((*BACKOFF_S, None), start=1):
        try:
            data = await http.request(route, json=body)
            return str(data.get("id", "")) if isinstance(data, dict) else ""
        except _AMBIGUOUS as err:
            problem = f"{type(err).__name__}: {err}"
        except discord.HTTPException as err:
            raise PermanentError(f"discord: sending to {channel_id} failed: {err}") from None
        if delay is None:
            raise TransientError(
                f"discord: sending to {channel_id} failed {attempt} times: {problem}"
            )
        log.warning("sending to %s failed (%s); retrying with the same nonce", channel_id, problem)
        metrics.sends_retried.inc("discord")
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def send_typing(http: discord.http.HTTPClient, channel_id: str) -> None:
    """Show "musher is typing…" in ``channel_id`` for about ten seconds."""
    await http.request(Route("POST", "/channels/{channel_id}/typing", channel_id=channel_id))


async def interaction_callback(
    http: discord.http.HTTPClient, interaction_id: str, token: str, payload: dict[str, Any]
) -> None:
    """Answer an interaction received over the gateway (within its 3-second window)."""
    route = Route(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        interaction_id=interaction_id,
        interaction_token=token,
    )
    await http.request(route, json=payload)


async def follow_up(
    http: discord.http.HTTPClient, application_id: str, token: str, content: str, ephemeral: bool
) -> None:
    """Post a follow-up message to an interaction (after its first response)."""
    route = Route(
        "POST",
        "/webhooks/{webhook_id}/{webhook_token}",
        webhook_id=application_id,
        webhook_token=token,
    )
    body: dict[str, Any] = {"content": content, "allowed_mentions": NO_MENTIONS}
    if ephemeral:
        body["flags"] = EPHEMERAL
    await http.request(route, json=body)
