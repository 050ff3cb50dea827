"""nanobot-ai driven through its WebSocket channel (the channel its WebUI and TUI use).

``nanobot gateway --config <workdir>/config.json`` runs with ``HOME`` in the work directory,
a custom OpenAI-compatible provider pointing at the fake LLM, and only the ``websocket``
channel on 127.0.0.1 (no token: ``websocketRequiresToken = false``; ``streaming = false`` so
an answer arrives as one ``message`` event instead of deltas; heartbeat and Dream memory
consolidation off, so no timer makes LLM calls of its own). Each room is one WebSocket
connection: nanobot gives every connection its own chat (session), and a plain text frame is
one user message. Everything else is nanobot's default (per-session lock, mid-turn injection
of messages that arrive during a turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp

from bench.peers.install import PINNED, executable, install
from bench.peers.procs import Proc, clean_env, free_port, wait_for_port
from bench.peers.systems import OnMessage, System

PACKAGE = "nanobot-ai"


def config(llm_url: str, workspace: Path, gateway_port: int, ws_port: int) -> dict[str, object]:
    return {
        "agents": {
            "defaults": {
                "provider": "custom",
                "model": "fake-model",
                "workspace": str(workspace),
                "dream": {"enabled": False},
            }
        },
        "providers": {"custom": {"apiKey": "bench", "apiBase": llm_url}},
        "gateway": {"host": "127.0.0.1", "port": gateway_port, "heartbeat": {"enabled": False}},
        "channels": {
            "websocket": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": ws_port,
                "websocketRequiresToken": False,
                "streaming": False,
            }
        },
    }


class Nanobot(System):
    name = "nanobot"
    version = PINNED[PACKAGE]

    def __init__(self, on_message: OnMessage) -> None:
        super().__init__(on_message)
        self._proc: Proc | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._port = 0

    async def start(self, llm_url: str, workdir: Path) -> None:
        install(PACKAGE)
        self._port = free_port()
        path = workdir / "config.json"
        cfg = config(llm_url, workdir / "workspace", free_port(), self._port)
        path.write_text(json.dumps(cfg, indent=2))
        argv = [str(executable(PACKAGE, "nanobot")), "gateway", "--config", str(path)]
        env = clean_env(HOME=str(workdir))
        self._proc = await Proc.start(self.name, argv, env, workdir, workdir / "log")
        await wait_for_port(self._port, self._proc)
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def open_rooms(self, rooms: list[str]) -> None:
        await self._close_rooms()  # the last workload's rooms are done with
        try:
            await asyncio.wait_for(asyncio.gather(*(self._open(room) for room in rooms)), 30)
        except TimeoutError:
            raise RuntimeError("nanobot: the rooms' WebSocket connections did not open") from None

    async def _close_rooms(self) -> None:
        for ws in self._ws.values():
            with contextlib.suppress(Exception):
                await ws.close()
        self._ws.clear()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers.clear()

    async def _open(self, room: str) -> None:
        assert self._http is not None
        ws = await self._http.ws_connect(f"ws://127.0.0.1:{self._port}/?client_id={room}")
        ready = await ws.receive_json(timeout=30)
        if ready.get("event") != "ready":
            raise RuntimeError(f"nanobot: expected a ready event, got {ready}")
        self._ws[room] = ws
        self._readers.append(asyncio.create_task(self._read(room, ws)))

    async def _read(self, room: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(frame.data)
            if data.get("event") == "message":
                # tool hints and progress lines are trace rows, not answers
                kind = data.get("kind")
                prefix = f"[{kind}] " if kind else ""
                self.on_message(room, prefix + str(data.get("text", "")))

    async def send(self, room: str, text: str) -> None:
        await self._ws[room].send_str(text)

    async def stop(self) -> None:
        await self._close_rooms()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            await self._proc.stop()
