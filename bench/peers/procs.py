"""Child processes of the peer benchmark: each in its own process group, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for peers that need one up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without musher's own settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSHER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """One child process (and its group) whose output goes to ``log``."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    @classmethod
    async def start(
        cls, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
    ) -> Proc:
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, proc, log)

    def alive(self) -> bool:
        return self.proc.returncode is None

    def tail(self, chars: int = 1500) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]

    def check(self) -> None:
        """Raise if the process has exited."""
        if not self.alive():
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")

    async def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the group, then SIGKILL to the group after ``grace_s``."""
        if self.alive():
            self._signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), grace_s)
        # Whatever the process left in its group (workers, tool processes) goes too.
        self._signal(signal.SIGKILL)
        if self.alive():
            await self.proc.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


async def wait_for_port(port: int, proc: Proc, limit_s: float = 90.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        proc.check()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    raise RuntimeError(f"{proc.name} did not listen on port {port}: {proc.tail()}")
