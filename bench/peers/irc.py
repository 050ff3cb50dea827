"""A minimal IRC server (RFC 1459 lines over TCP on 127.0.0.1) for driving hermes-agent.

It accepts the bot's connection, registers it (``001`` after ``NICK``/``USER``), answers
``PING`` and ``JOIN``, and plays every benchmark user itself: :meth:`IrcServer.say` writes a
direct message (``:<user>!bench@127.0.0.1 PRIVMSG <bot> :<text>``) to the bot, and each
``PRIVMSG <user> :<text>`` the bot sends is handed to ``on_message(user, text)``. One user
is one room: hermes keys a direct-message session by the sender's nick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

SERVER = "bench.irc"


class IrcServer:
    def __init__(self, on_message: Callable[[str, str], None]) -> None:
        self.on_message = on_message
        self.port = 0
        self.nick = ""
        self.joined = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._tasks):
            task.cancel()

    async def say(self, user: str, text: str) -> None:
        """``user`` sends ``text`` to the bot as a direct message."""
        if self._writer is None:
            raise RuntimeError("the bot is not connected to the IRC server")
        self._writer.write(f":{user}!bench@127.0.0.1 PRIVMSG {self.nick} :{text}\r\n".encode())
        await self._writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writer = writer
        try:
            while line := await reader.readline():
                await self._line(writer, line.decode("utf-8", "replace").rstrip("\r\n"))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _line(self, writer: asyncio.StreamWriter, line: str) -> None:
        command, _, rest = line.partition(" ")
        command = command.upper()
        if command == "NICK":
            self.nick = rest.strip().lstrip(":")
        elif command == "USER":
            writer.write(f":{SERVER} 001 {self.nick} :Welcome to the bench\r\n".encode())
            writer.write(f":{SERVER} 376 {self.nick} :End of MOTD\r\n".encode())
        elif command == "PING":
            writer.write(f":{SERVER} PONG {SERVER} {rest}\r\n".encode())
        elif command == "JOIN":
            for channel in rest.strip().split(","):
                writer.write(f":{self.nick}!bot@127.0.0.1 JOIN {channel}\r\n".encode())
            self.joined.set()
        elif command == "PRIVMSG":
            target, _, text = rest.partition(" :")
            self.on_message(target.strip(), text)
        elif command == "QUIT":
            writer.close()
            return
        await writer.drain()
