"""``musher say``: post to the running daemon's web transport and print the replies."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bot.sse import iter_lines, iter_sse
from config.errors import ConfigError

QUIET_S = 1.0  # after a reply, this long without news (and no "working") ends the wait


def daemon_url(data_dir: Path) -> str:
    """The URL the daemon using ``data_dir`` listens on, from its ``daemon.json``."""
    path = data_dir / "daemon.json"
    try:
        info = json.loads(path.read_text())
        return str(info["url"])
    except (OSError, ValueError, KeyError):
        raise ConfigError(
            [f"{path}: no running daemon found (start one with `musher run`)"]
        ) from None


async def say(
    data_dir: Path, room: str, sender: str, text: str, token: str | None, limit_s: float
) -> int:
    """Post ``text`` and print each bot reply as it arrives; 0 when a reply came, 1 if none.

    ``$MUSHER_TOKEN`` (a ``[transports.web] users`` token) takes precedence over ``token``.
    """
    token = os.environ.get("MUSHER_TOKEN") or token
    url = daemon_url(data_dir)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=limit_s) as client:
        try:
            async with asyncio.timeout(limit_s):
                return await _converse(client, room, sender, text)
        except TimeoutError:
            print(f"musher say: no complete answer within {limit_s:g} s", file=sys.stderr)
            return 1
        except httpx.HTTPError as err:
            print(f"musher say: cannot reach the daemon at {url}: {err}", file=sys.stderr)
            return 1


async def _converse(client: httpx.AsyncClient, room: str, sender: str, text: str) -> int:
    """Subscribe from the room's newest line, post, print what follows our message.

    The stream starts ``after`` the last line read beforehand, so a reply that lands while
    the stream is being set up is caught up, never missed.
    """
    last = await _last_seq(client, room)
    if isinstance(last, str):
        print(f"musher say: {last}", file=sys.stderr)
        return 1
    async with client.stream("GET", f"/api/v1/rooms/{room}/events?after={last}") as stream:
        if stream.status_code != 200:
            await stream.aread()
            print(f"musher say: {_error(stream)}", file=sys.stderr)
            return 1
        events = _sse(stream)
        await anext(events)  # the stream's opening comment: we are subscribed
        event_id = uuid.uuid4().hex
        posted = await client.post(
            f"/api/v1/rooms/{room}/messages", json={"sender": sender, "text": text, "id": event_id}
        )
        if posted.status_code >= 400:
            print(f"musher say: {_error(posted)}", file=sys.stderr)
            return 1
        return await _print_replies(events, sender, text)


async def _last_seq(client: httpx.AsyncClient, room: str) -> int | str:
    """The room's newest log ``seq`` (paging through its history), or an error message."""
    last = 0
    while True:
        response = await client.get(f"/api/v1/rooms/{room}/messages", params={"after": last})
        if response.status_code != 200:
            return _error(response)
        page = response.json()
        if not page.get("messages"):
            return last
        last = int(page["next"])


def is_own(data: dict[str, Any], sender: str, text: str) -> bool:
    """Whether a room log line is the message we posted: the daemon logs it without the
    leading mention (``@musher status`` → ``status``)."""
    logged = str(data.get("text", ""))
    return data.get("sender") == sender and bool(logged) and text.strip().endswith(logged)


async def _print_replies(events: AsyncIterator[tuple[str, Any]], sender: str, text: str) -> int:
    """Print the bot's lines after our own message until the bot is quiet (not typing)."""
    seen_own = False
    replies = 0
    typing = False
    while True:
        wait = QUIET_S if replies and not typing else None
        try:
            kind, data = await asyncio.wait_for(anext(events), wait)
        except TimeoutError:
            return 0
        if kind == "typing":
            typing = bool(data.get("active"))
        elif kind == "message" and data.get("role") == "user":
            seen_own = seen_own or is_own(data, sender, text)
        elif kind == "message" and seen_own:
            print(data.get("text", ""), flush=True)
            replies += 1


async def _sse(stream: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """``("comment", None)`` for the stream's opening comment, then ``(event, data)``."""
    lines = iter_lines(stream.aiter_bytes())
    async for line in lines:
        if line.startswith(":"):
            yield "comment", None
            break
    async for event in iter_sse(lines):
        yield event.event, json.loads(event.data)


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
