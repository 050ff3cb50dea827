"""Run one program to completion for the project tools (git, sandboxes, gates).

Never through a shell. The program leads its own process group; on timeout or cancel the
whole group is SIGKILLed and the child reaped before control returns, so nothing it
started keeps running in a project directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL_BYTES = 16_384
_LINE_BREAKS = (b"\n", b"\r")


@dataclass(frozen=True, slots=True)
class Finished:
    """How a program ended: its exit code (``None`` after a timeout) and its output's tail
    (stdout and stderr together, at most :data:`TAIL_BYTES`, decoded leniently)."""

    returncode: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


OnLine = Callable[[str], Awaitable[None]]


async def run(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
    on_line: OnLine | None = None,
) -> Finished:
    """Run ``argv`` and wait for it; ``on_line`` sees each output line (``\\r`` ends one).

    Guarantees: on timeout or cancellation the program's process group is SIGKILLed and
    the child reaped before this returns or re-raises.

    Raises:
        OSError: the program could not be started (``FileNotFoundError`` when missing).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    tail = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            await _read(proc, tail, on_line)
            code: int | None = await proc.wait()
    except TimeoutError:
        code = None
    finally:
        await _kill_group(proc)
    return Finished(code, tail.decode("utf-8", "replace"))


async def _read(proc: asyncio.subprocess.Process, tail: bytearray, on_line: OnLine | None) -> None:
    assert proc.stdout is not None
    line = bytearray()
    while chunk := await proc.stdout.read(4096):
        tail.extend(chunk)
        del tail[:-TAIL_BYTES]
        if on_line is None:
            continue
        for byte in chunk:
            if bytes([byte]) in _LINE_BREAKS:
                if line:
                    await on_line(line.decode("utf-8", "replace"))
                line.clear()
            elif len(line) < 4096:
                line.append(byte)
    if line and on_line is not None:
        await on_line(line.decode("utf-8", "replace"))


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the program's group (it may have left children) and reap the program."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await asyncio.shield(proc.wait())
