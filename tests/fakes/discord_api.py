"""A fake Discord: REST v10 and a JSON gateway on 127.0.0.1 that a real discord.py connects to.

    with FakeDiscord() as discord:
        ... api_base_url = discord.api_url, gateway_url = discord.gateway_url ...
        discord.say("<@BOT> status")                      # MESSAGE_CREATE from a person
        discord.typing_start()                            # TYPING_START from that person
        discord.slash("move", [{"name": "item", "value": 1, "type": 4}])
        discord.fail("create_message", 429, retry_after=1.0)
        discord.fail("create_message", 502, commit=True)  # creates, then answers 502
        discord.drop(refuse=True)                         # RECONNECT; refuse the next connects

REST: ``users/@me`` (checks the token), the application, bulk command overwrites (global and
per guild), create-message (honours ``nonce`` + ``enforce_nonce``: a repeat returns the
message already created), typing, interaction callbacks and follow-ups. Gateway: HELLO,
IDENTIFY → READY + GUILD_CREATE (one channel, one thread in it), RESUME → RESUMED,
heartbeats. Every REST call is recorded with its arrival time and status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import guild, member, message, snowflake, user
from tests.fakes.threaded import ThreadedServer

TOKEN = "fake-discord-bot-token"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py wants exactly "application/json" (no charset) to parse a body
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


@dataclass(frozen=True)
class Call:
    route: str
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int
    path: str = ""


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: float = 1.0
    commit: bool = False  # perform the call, then answer ``status`` anyway
    is_global: bool = False


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    followups: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    gateway_ops: list[int] = field(default_factory=list)
    gateways_open: int = 0  # gateway connections open now
    most_gateways_open: int = 0  # the most ever open at one moment
    gateways_opened: int = 0
    readies: int = 0  # sessions sent READY and their guild: messages after it are seen


class FakeDiscord(ThreadedServer):
    def __init__(self) -> None:
        super().__init__("fake-discord")
        self.bot_user = user(snowflake(), "musherbot", bot=True)
        self.human = user(snowflake(), "alice", global_name="Alice")
        self.app_id = self.bot_user["id"]
        self.guild_id, self.channel_id, self.thread_id = snowflake(), snowflake(), snowflake()
        self.role_id = snowflake()
        self.refuse = False
        self._state = _State()
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._routes()

    # --- where to point musher ---------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/gateway"

    # --- programming and reading -------------------------------------------------------

    def fail(self, route: str, status: int, times: int = 1, **kw: Any) -> None:
        """The next ``times`` calls to ``route`` (create_message, callback, followup) fail."""
        with self.lock:
            self._state.faults[route].extend([Fault(status, **kw)] * times)

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._state.calls)

    def calls_to(self, route: str) -> list[Call]:
        return [c for c in self.calls if c.route == route]

    @property
    def sent(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._state.sent)

    def texts(self, channel_id: str | None = None) -> list[str]:
        return [m["content"] for m in self.sent if channel_id in (None, m["channel_id"])]

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._state.callbacks)

    @property
    def followups(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._state.followups)

    @property
    def commands(self) -> dict[str, list[dict[str, Any]]]:
        """Registered commands by scope: ``"global"`` or a guild id."""
        with self.lock:
            return dict(self._state.commands)

    @property
    def gateway_ops(self) -> list[int]:
        with self.lock:
            return list(self._state.gateway_ops)

    @property
    def gateways_open(self) -> int:
        """Gateway connections open now (a bot token should hold at most one)."""
        with self.lock:
            return self._state.gateways_open

    @property
    def most_gateways_open(self) -> int:
        """The most gateway connections that were ever open at one moment."""
        with self.lock:
            return self._state.most_gateways_open

    @property
    def readies(self) -> int:
        """Gateway sessions that got READY and GUILD_CREATE (a message said before its
        session's GUILD_CREATE names a channel the client does not know yet)."""
        with self.lock:
            return self._state.readies

    @property
    def gateways_opened(self) -> int:
        """Gateway connections accepted so far."""
        with self.lock:
            return self._state.gateways_opened

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    def say(
        self,
        content: str,
        channel_id: str | None = None,
        author: dict[str, Any] | None = None,
        direct: bool = False,
    ) -> str:
        """A person's message arrives over the gateway; returns its id."""
        message = self._message(author or self.human, content, channel_id or self.channel_id)
        message["mentions"] = [self.bot_user] if f"<@{self.app_id}>" in content else []
        message["mention_roles"] = [self.role_id] if f"<@&{self.role_id}>" in content else []
        if direct:
            message.pop("guild_id")
        else:
            message["member"] = member()
        self.call(self.dispatch("MESSAGE_CREATE", message))
        return str(message["id"])

    def typing_start(self, channel_id: str | None = None) -> None:
        """The person starts typing (TYPING_START); Discord says nothing when they stop."""
        data = {
            "channel_id": channel_id or self.channel_id,
            "guild_id": self.guild_id,
            "user_id": self.human["id"],
            "timestamp": int(time.time()),
            "member": {**member(), "user": self.human},
        }
        self.call(self.dispatch("TYPING_START", data))

    def slash(self, name: str, options: list[dict[str, Any]] | None = None, **kw: Any) -> str:
        """An application command arrives over the gateway (INTERACTION_CREATE)."""
        interaction = self.interaction(name, options, **kw)
        self.call(self.dispatch("INTERACTION_CREATE", interaction))
        return str(interaction["id"])

    def interaction(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        user: dict[str, Any] | None = None,
        channel_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON of an application-command interaction, as Discord sends it."""
        iid = snowflake()
        channel = channel_id or self.channel_id
        return {
            "id": iid,
            "application_id": self.app_id,
            "type": 2,
            "token": f"tok-{iid}",
            "version": 1,
            "attachment_size_limit": 10485760,
            "guild_id": self.guild_id,
            "channel_id": channel,
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": "1071698660929",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "context": 0,
            "member": {**member(), "user": user or self.human, "permissions": "1071698660929"},
            "channel": {"id": channel, "type": 0, "name": "general", "guild_id": self.guild_id},
            "data": {"id": snowflake(), "name": name, "type": 1, "options": options or []},
        }

    def drop(self, refuse: bool = False) -> None:
        """Ask the client to reconnect (op 7) and close; ``refuse`` keeps it out until
        :attr:`refuse` is set back to ``False``."""
        self.refuse = refuse
        self.call(self._drop())

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        assert self._ws is not None, "no client is connected"
        self._seq += 1
        await self._ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def closing(self) -> None:
        self.refuse = True
        if self._ws is not None:
            await self._ws.close()

    # --- REST --------------------------------------------------------------------------

    def _routes(self) -> None:
        r = self.app.router
        base = "/api/v10"
        r.add_get("/gateway", self._gateway)
        r.add_get(f"{base}/users/@me", self._me)
        r.add_get(f"{base}/oauth2/applications/@me", self._application)
        r.add_get(f"{base}/applications/@me", self._application)
        r.add_put(f"{base}/applications/{{app}}/commands", self._commands)
        r.add_put(f"{base}/applications/{{app}}/guilds/{{guild}}/commands", self._commands)
        r.add_post(f"{base}/channels/{{cid}}/messages", self._create_message)
        r.add_post(f"{base}/channels/{{cid}}/typing", self._typing)
        r.add_post(f"{base}/interactions/{{iid}}/{{tok}}/callback", self._callback)
        r.add_post(f"{base}/webhooks/{{app}}/{{tok}}", self._followup)

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {TOKEN}":
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return json_response(self.bot_user)

    async def _application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": self.app_id,
                "name": "musher",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.human,
                "verify_key": "00" * 32,
                "flags": 0,
                "team": None,
                "summary": "",
                "rpc_origins": [],
                "bot": self.bot_user,
            }
        )

    async def _commands(self, request: web.Request) -> web.Response:
        body = await request.json()
        scope = request.match_info.get("guild", "global")
        with self.lock:
            self._state.commands[scope] = body
            self._state.calls.append(Call("commands", {"commands": body}, time.monotonic(), 200))
        made = [
            {**c, "id": snowflake(), "application_id": self.app_id, "version": "1"} for c in body
        ]
        return json_response(made)

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fault = self._record("create_message", body, request.path)
        if fault is not None and not fault.commit:
            return _failure(fault)
        cid = request.match_info["cid"]
        with self.lock:
            nonce = body.get("nonce") if body.get("enforce_nonce") else None
            existing = [m for m in self._state.sent if nonce and m["nonce"] == nonce]
            message = (
                existing[0] if existing else self._message(self.bot_user, body["content"], cid)
            )
            if not existing:
                message["nonce"] = nonce
                self._state.sent.append(message)
        return _failure(fault) if fault is not None else json_response(message)

    async def _typing(self, request: web.Request) -> web.StreamResponse:
        self._record("typing", {"channel_id": request.match_info["cid"]}, request.path)
        return web.Response(status=204)

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fault = self._record("callback", body, request.path)
        if fault is not None and not fault.commit:
            return _failure(fault)
        with self.lock:
            self._state.callbacks.append({"interaction_id": request.match_info["iid"], **body})
        return _failure(fault) if fault is not None else web.Response(status=204)

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fault = self._record("followup", body, request.path)
        if fault is not None and not fault.commit:
            return _failure(fault)
        message = self._message(self.bot_user, body.get("content", ""), self.channel_id)
        with self.lock:
            self._state.followups.append({"token": request.match_info["tok"], **body})
        return _failure(fault) if fault is not None else json_response(message)

    def _record(self, route: str, body: dict[str, Any], path: str) -> Fault | None:
        with self.lock:
            faults = self._state.faults.get(route)
            fault = faults.popleft() if faults else None
            status = fault.status if fault else 200
            self._state.calls.append(Call(route, body, time.monotonic(), status, path))
        return fault

    def _message(self, author: dict[str, Any], content: str, channel_id: str) -> dict[str, Any]:
        return message(author, content, channel_id, self.guild_id)

    # --- gateway -----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse(timeout=1.0)  # a close waits at most 1 s for the client
        await ws.prepare(request)
        self._ws = ws
        with self.lock:
            state = self._state
            state.gateways_open += 1
            state.gateways_opened += 1
            state.most_gateways_open = max(state.most_gateways_open, state.gateways_open)
        try:
            await self._serve_gateway(ws, request.host)
        finally:
            with self.lock:
                self._state.gateways_open -= 1
        return ws

    async def _serve_gateway(self, ws: web.WebSocketResponse, host: str) -> None:
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            with self.lock:
                self._state.gateway_ops.append(payload["op"])
            if payload["op"] == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif payload["op"] == 2:
                await self._ready(host)
            elif payload["op"] == 6:
                await self.dispatch("RESUMED", {})

    async def _drop(self) -> None:
        if self._ws is not None:
            await self._ws.send_str(json.dumps({"op": 7, "d": None}))
            await asyncio.sleep(0.05)
            await self._ws.close(code=4000)

    async def _ready(self, host: str) -> None:
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": self.guild_id, "unavailable": True}],
                "session_id": "session-1",
                "resume_gateway_url": f"ws://{host}/gateway",
                "application": {"id": self.app_id, "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        await self.dispatch("GUILD_CREATE", self._guild())
        with self.lock:
            self._state.readies += 1

    def _guild(self) -> dict[str, Any]:
        return guild(
            self.guild_id, self.channel_id, self.thread_id, self.role_id, self.human, self.bot_user
        )


def _failure(fault: Fault) -> web.Response:
    if fault.status == 429:
        body = {
            "message": "You are being rate limited.",
            "retry_after": fault.retry_after,
            "global": fault.is_global,
        }
        headers = {"Retry-After": f"{fault.retry_after:g}", "Via": "1.1 google"}
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        return json_response(body, status=429, headers=headers)
    return web.Response(
        status=fault.status, text="<html>Bad Gateway</html>", content_type="text/html"
    )
