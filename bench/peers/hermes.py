"""hermes-agent driven through its messaging gateway's IRC adapter, against a local IRC server.

hermes-agent's chat path (the gateway: per-session guard, ``busy_input_mode``, acks) runs for
its messaging platforms only; its OpenAI-compatible API server bypasses it. Of those
platforms IRC is the one whose server can be pointed at 127.0.0.1 and spoken without
credentials or an SDK, so ``hermes gateway run`` connects to :class:`bench.peers.irc.IrcServer`
(``IRC_SERVER``/``IRC_PORT``, no TLS) and every room is a direct message from its own nick.
``HERMES_HOME`` and ``HOME`` are the work directory; ``config.yaml`` sets a ``custom``
provider at the fake LLM with a fixed ``context_length`` (no metadata probes) and
``security.allow_lazy_installs: false`` (otherwise the first turn pip-installs the TTS
backend). ``GATEWAY_ALLOW_ALL_USERS``/``IRC_ALLOW_ALL_USERS`` let the benchmark users in
without pairing. Everything else is hermes-agent's default (``busy_input_mode: interrupt``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.peers.install import PINNED, executable, install
from bench.peers.irc import IrcServer
from bench.peers.procs import Proc, clean_env
from bench.peers.systems import OnMessage, System

PACKAGE = "hermes-agent"
NICK = "hermes"

CONFIG = """model:
  provider: custom
  default: fake-model
  base_url: {llm_url}
  api_key: bench
  context_length: 131072
security:
  allow_lazy_installs: false
"""


class Hermes(System):
    name = "hermes"
    version = PINNED[PACKAGE]

    def __init__(self, on_message: OnMessage) -> None:
        super().__init__(on_message)
        self._proc: Proc | None = None
        self._irc = IrcServer(self._from_bot)

    def _from_bot(self, target: str, text: str) -> None:
        if not target.startswith("#"):  # the home channel gets shutdown notices only
            self.on_message(target, text)

    async def start(self, llm_url: str, workdir: Path) -> None:
        install(PACKAGE)
        await self._irc.start()
        home = workdir / "hermes"
        home.mkdir()
        (home / "config.yaml").write_text(CONFIG.format(llm_url=llm_url))
        env = clean_env(
            HOME=str(workdir),
            HERMES_HOME=str(home),
            IRC_SERVER="127.0.0.1",
            IRC_PORT=str(self._irc.port),
            IRC_NICKNAME=NICK,
            IRC_CHANNEL="#bench",
            IRC_USE_TLS="false",
            IRC_ALLOW_ALL_USERS="true",
            GATEWAY_ALLOW_ALL_USERS="true",
        )
        argv = [str(executable(PACKAGE, "hermes")), "gateway", "run"]
        self._proc = await Proc.start(self.name, argv, env, workdir, workdir / "log")
        joined = asyncio.create_task(self._irc.joined.wait())
        try:
            while not joined.done():
                self._proc.check()
                await asyncio.wait({joined}, timeout=0.5)
        finally:
            joined.cancel()

    async def send(self, room: str, text: str) -> None:
        await self._irc.say(room, text)

    async def stop(self) -> None:
        # The IRC server stays up while hermes shuts down: its goodbyes go out over it.
        if self._proc is not None:
            await self._proc.stop()
        await self._irc.stop()
