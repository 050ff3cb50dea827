"""The systems under test, each driven through a chat interface it really offers.

A :class:`System` is started against the fake LLM's URL in a work directory of its own,
opens the rooms of a workload before the clock starts (a stream or a connection per room),
sends a message to a room as one person would, and reports every message it gets back
through ``on_message(room, text)``. This module holds the interface and musher; the peers
are :mod:`bench.peers.nanobot` and :mod:`bench.peers.hermes`.

musher runs as a real ``python -m bot run`` with its web transport: ``POST
/api/v1/rooms/{room}/messages`` to send, one ``GET /api/v1/rooms/{room}/events`` SSE stream
per room to receive, ``[llm] provider = "openai"`` against the fake LLM. A variant adds
``[dispatcher]`` keys (e.g. ``busy_mode = "steer"``); a build that does not know a key
refuses to start, and the benchmark reports that instead of figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import aiohttp

from bench.peers.procs import Proc, clean_env

NOT_BUILT = "not in this build"
"""How a musher variant whose settings this build refuses fails to start (a skip, not an error)."""

OnMessage = Callable[[str, str], None]
"""``(room, text)`` of one message a system sent to a room."""


class System(ABC):
    name: str
    version: str

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message

    @abstractmethod
    async def start(self, llm_url: str, workdir: Path) -> None: ...

    async def open_rooms(self, rooms: list[str]) -> None:
        """Get ready to receive in ``rooms`` (default: nothing to do)."""
        return None

    @abstractmethod
    async def send(self, room: str, text: str) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


MUSHER_CONFIG = """
[daemon]
data_dir = "{data_dir}"
log_level = "WARNING"

[http]
port = 0

[llm]
provider = "openai"

[llm.openai]
base_url = "{llm_url}"
model = "fake-model"
api_key = "bench"

[dispatcher]
{dispatcher}
"""

MUSHER_VARIANTS: dict[str, dict[str, object]] = {
    "musher": {},
    "musher-quiet": {"coalesce_quiet_ms": 300},
    "musher-steer": {"busy_mode": "steer"},
    "musher-interrupt": {"busy_mode": "interrupt"},
}
"""Variant name → ``[dispatcher]`` keys on top of the defaults."""

TYPING_VARIANTS = frozenset({"musher-quiet"})
"""Variants whose client reports typing as the web page does: typing while it writes each
message, ended by sending it (so the room is one whose batches close on the quiet time)."""


class Musher(System):
    def __init__(self, on_message: OnMessage, variant: str = "musher") -> None:
        super().__init__(on_message)
        self.name = variant
        self.version = version("musher")
        self.dispatcher = MUSHER_VARIANTS[variant]
        self.url = ""
        self._proc: Proc | None = None
        self._http: aiohttp.ClientSession | None = None
        self._streams: dict[str, asyncio.Task[None]] = {}

    async def start(self, llm_url: str, workdir: Path) -> None:
        data_dir = workdir / "data"
        dispatcher = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.dispatcher.items())
        config = workdir / "bot.toml"
        config.write_text(
            MUSHER_CONFIG.format(data_dir=data_dir, llm_url=llm_url, dispatcher=dispatcher)
        )
        argv = [sys.executable, "-m", "bot", "run", "--config", str(config)]
        self._proc = await Proc.start(self.name, argv, clean_env(), workdir, workdir / "log")
        info = data_dir / "daemon.json"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not self.url:
            if not self._proc.alive():
                # a config this build refuses ("unknown key", "Input should be ...")
                last = self._proc.tail().strip().splitlines()[-1:] or ["no output"]
                reason = last[0].split("bot.toml: ", 1)[-1]
                raise RuntimeError(f"{NOT_BUILT} ({reason})")
            if loop.time() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self._proc.tail()}")
            if info.exists():
                with contextlib.suppress(ValueError, KeyError):
                    self.url = json.loads(info.read_text())["url"]
            await asyncio.sleep(0.05)
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # an SSE stream per room holds a connection
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def open_rooms(self, rooms: list[str]) -> None:
        await self._close_streams()  # the last workload's rooms are done with
        ready = [asyncio.get_running_loop().create_future() for _ in rooms]
        for room, future in zip(rooms, ready, strict=True):
            self._streams[room] = asyncio.create_task(self._listen(room, future))
        try:
            await asyncio.wait_for(asyncio.gather(*ready), 30)
        except TimeoutError:
            raise RuntimeError(f"{self.name}: the rooms' event streams did not open") from None

    async def _close_streams(self) -> None:
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        self._streams.clear()

    async def _listen(self, room: str, ready: asyncio.Future[None]) -> None:
        assert self._http is not None
        url = f"{self.url}/api/v1/rooms/{room}/events"
        try:
            async with self._http.get(url) as response:
                response.raise_for_status()
                event = ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith(":") and not ready.done():
                        ready.set_result(None)  # ": subscribed"
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "message":
                        data = json.loads(line[6:])
                        if data.get("role") == "bot":
                            self.on_message(room, str(data.get("text", "")))
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    async def send(self, room: str, text: str) -> None:
        assert self._http is not None
        if self.name in TYPING_VARIANTS:
            typing = {"sender": "alice", "typing": True}
            async with self._http.post(f"{self.url}/api/v1/rooms/{room}/typing", json=typing) as r:
                if r.status >= 300:
                    raise RuntimeError(f"{self.name}: typing answered {r.status}: {await r.text()}")
        body = {"sender": "alice", "text": text}
        async with self._http.post(f"{self.url}/api/v1/rooms/{room}/messages", json=body) as r:
            if r.status >= 300:
                raise RuntimeError(f"{self.name}: POST answered {r.status}: {await r.text()}")

    async def stop(self) -> None:
        await self._close_streams()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            await self._proc.stop()
