"""The ``claude-cli`` provider (L2): one ``claude -p`` process per turn, resumed per room.

Each turn runs ``<command> -p --output-format stream-json --verbose [--resume ID]
[--model M] [--mcp-config=FILE] <args…>`` in its own process group with the prompt on
stdin, and translates the stream-json events into :data:`~bot.llm.base.TurnEvent`. The
process tree is SIGKILLed and verified gone (:func:`bot.procs.kill_tree`) on every way out:
normal end, failure, ``cancel``, task cancellation, timeout and :meth:`aclose`.

With a :class:`~bot.llm.base.Steer` (busy mode ``steer``) the prompt goes in as a
stream-json user message (``--input-format stream-json``) and stdin stays open until the CLI
reports its first result: what the room says meanwhile is written to it as further user
messages. The CLI reads them at its next tool boundary, or answers them right after the
current answer, in the same process; it answers everything written before stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from bot.llm.base import (
    Failed,
    McpConfig,
    Steer,
    TextDelta,
    TurnEvent,
    TurnRequest,
)
from bot.llm.claude_sessions import ClaudeSessions
from bot.llm.claude_stream import StreamParser
from bot.procs import KillError, Process, exited, kill_tree, spawn
from config.models import ClaudeCliConfig

log = logging.getLogger("musher.llm.claude")

RESUME_NOTICE = "(The previous conversation could not be resumed; starting a new one.)\n\n"
SHUTDOWN_TEXT = "Stopped: musher is shutting down."
BASE_ARGS = ("-p", "--output-format", "stream-json", "--verbose")
STEER_ARGS = ("--input-format", "stream-json")
MCP_SERVER = "musher"  # the server name in the --mcp-config musher writes
PERMISSION_PROMPT_TOOL = f"mcp__{MCP_SERVER}__permission"  # bot.mcp_server.PERMISSION_TOOL
_UNKNOWN_SESSION = "No conversation found"
_LINE_LIMIT = 32 * 2**20
_STDERR_LINES = 20
_DRAIN_S = 1.0


class ClaudeCliProvider:
    """Runs turns through the ``claude`` CLI and keeps one CLI session per room.

    The CLI session id is stored as soon as the CLI announces it (``system/init``), so a
    stopped turn is still resumed by the next one. A room whose stored session the CLI no
    longer knows is told so once and gets a new session in the same turn.

    Args:
        config: ``[llm.claude_cli]``: command, extra args, extra environment, model.
        sessions: where each room's CLI session id is kept.
        mcp_config: builds the ``--mcp-config`` JSON for a turn, or None for no MCP servers.
        timeout_kill_s: how long a SIGKILLed process tree may take to be verified gone.
        state_dir: where per-turn MCP config files are written (mode 0600, removed after
            the turn); default the system temp dir.
    """

    name = "claude-cli"

    def __init__(
        self,
        config: ClaudeCliConfig,
        sessions: ClaudeSessions,
        mcp_config: McpConfig | None = None,
        timeout_kill_s: float = 2.0,
        state_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.timeout_kill_s = timeout_kill_s
        self._mcp_config = mcp_config
        self._state_dir = state_dir
        self._running: set[Process] = set()
        self.closing = False

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        """Stream one turn: text deltas, tool calls and results, usage, then Done or Failed.

        Ends with exactly one Done or Failed, except when ``cancel`` is set: then the
        iterator simply ends. Whether it ends, fails, is cancelled or is closed early
        (``aclose``), no process of the turn is left alive and the MCP config file is
        removed before the iterator finishes unwinding; a task cancellation is re-raised.
        Consumers should iterate under ``contextlib.aclosing`` so that an early exit
        closes the iterator at once rather than when it is garbage-collected.
        """
        mcp_path = self._write_mcp_config(request)
        try:
            resume = await self.sessions.get(request.session)
            attempt = _Attempt(self, request, cancel, resume, mcp_path)
            async with contextlib.aclosing(attempt.events()) as events:
                async for event in events:
                    yield event
            if not attempt.unknown_session or cancel.is_set():
                return
            log.warning("claude session %s of %s is gone; starting anew", resume, request.session)
            await self.sessions.clear(request.session)
            yield TextDelta(RESUME_NOTICE)
            attempt = _Attempt(self, request, cancel, None, mcp_path)
            async with contextlib.aclosing(attempt.events()) as events:
                async for event in events:
                    yield event
        finally:
            if mcp_path is not None:
                mcp_path.unlink(missing_ok=True)

    async def reset(self, session: str) -> None:
        """Forget ``session``'s CLI session; its next turn starts a new conversation."""
        await self.sessions.clear(session)

    async def aclose(self) -> None:
        """Kill (verified) every ``claude`` process still running; their turns end Failed.

        Idempotent. Raises :class:`~bot.procs.KillError` if a process tree survives.
        """
        self.closing = True
        for proc in list(self._running):
            await kill_tree(proc, self.timeout_kill_s)

    def argv(
        self, resume: str | None, mcp_path: Path | None, tool_access: str = "commands"
    ) -> list[str]:
        """The command line of one turn (the prompt goes to stdin, never into argv).

        With ``tool_access`` other than ``commands`` (L7) the CLI may use its own tools, and
        asks musher's ``permission`` tool before each use it does not allow by itself.
        """
        argv = [*self.config.command, *BASE_ARGS]
        if resume:
            argv += ["--resume", resume]
        if self.config.model:
            argv += ["--model", self.config.model]
        if mcp_path is not None:
            # One "--opt=value" word: --mcp-config is variadic and would swallow the next args.
            argv.append(f"--mcp-config={mcp_path}")
            argv.append(f"--allowedTools=mcp__{MCP_SERVER}")  # musher's tools run unprompted
            if tool_access != "commands":
                argv.append(f"--permission-prompt-tool={PERMISSION_PROMPT_TOOL}")
        return argv + list(self.config.args)

    def env(self) -> dict[str, str]:
        """The environment of the CLI: musher's own, plus ``[llm.claude_cli] env``.

        The CLI waits for musher's MCP server before its first step (by default it connects
        in the background), so the model sees musher's commands from the start and the
        permission tool exists when the first tool use is checked.
        """
        return {"MCP_CONNECTION_NONBLOCKING": "0", **os.environ, **self.config.env}

    def _write_mcp_config(self, request: TurnRequest) -> Path | None:
        config = self._mcp_config(request) if self._mcp_config is not None else None
        if config is None:
            return None
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="claude-mcp-", suffix=".json", dir=self._state_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(config, file)
        return Path(name)


class _Attempt:
    """One ``claude`` process: spawn, feed the prompt, parse stdout, always kill the tree."""

    def __init__(
        self,
        provider: ClaudeCliProvider,
        request: TurnRequest,
        cancel: asyncio.Event,
        resume: str | None,
        mcp_path: Path | None,
    ) -> None:
        self.provider = provider
        self.request = request
        self.cancel = cancel
        self.resume = resume
        self.argv = provider.argv(resume, mcp_path, request.tool_access)
        if request.steer is not None:
            self.argv += STEER_ARGS
        self.answered = asyncio.Event()  # the CLI reported a result (or stdout ended)
        self.parser = StreamParser()
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.stored = resume
        self.unknown_session = False

    async def events(self) -> AsyncGenerator[TurnEvent, None]:
        if self.provider.closing:
            yield Failed(SHUTDOWN_TEXT)
            return
        try:
            proc = await spawn(
                self.argv, cwd=self.request.cwd, env=self.provider.env(), limit=_LINE_LIMIT
            )
        except OSError as exc:
            yield Failed(f"Could not start the claude CLI ({self.argv[0]}): {exc}")
            return
        self.provider._running.add(proc)
        reader = asyncio.create_task(self._read_stderr(proc), name=f"claude-stderr-{proc.pid}")
        watcher = asyncio.create_task(self._watch(proc), name=f"claude-watch-{proc.pid}")
        steer = self.request.steer
        pump = None
        try:
            if steer is None:
                await self._feed_stdin(proc)
            else:
                await self._write(proc, self.request.prompt)
                pump = asyncio.create_task(self._pump(proc, steer), name=f"claude-steer-{proc.pid}")
            async for event in self._read_stdout(proc):
                yield event
            self.answered.set()
            returncode = await proc.wait()
            await asyncio.wait({reader})  # every writer is dead once _watch has killed
            final = self._final(returncode)
            if final is not None:
                yield final
        finally:
            try:
                await kill_tree(proc, self.provider.timeout_kill_s)  # first: holds back cancels
            finally:
                self.provider._running.discard(proc)
                watcher.cancel()
                await asyncio.wait({watcher})
                if pump is not None:
                    pump.cancel()
                    await asyncio.wait({pump})
                await _drain(proc, reader)

    def _final(self, returncode: int) -> TurnEvent | None:
        if self.cancel.is_set():
            return None
        if self.provider.closing and returncode < 0:
            return Failed(SHUTDOWN_TEXT)
        if self._is_unknown_session(returncode):
            self.unknown_session = True
            return None
        return self.parser.finish(returncode, list(self.stderr))

    def _is_unknown_session(self, returncode: int) -> bool:
        if self.resume is None or returncode != 1 or self.parser.session_id is not None:
            return False
        said = [*self.stderr, *self.parser.result_errors()]
        return any(_UNKNOWN_SESSION in line for line in said)

    async def _feed_stdin(self, proc: Process) -> None:
        """Write the prompt and close stdin; a CLI that died first is judged by its exit."""
        assert proc.stdin is not None
        try:
            proc.stdin.write(self.request.prompt.encode())
            await proc.stdin.drain()
        except ConnectionError:
            log.debug("claude closed stdin before reading the whole prompt")
        finally:
            proc.stdin.close()
        with contextlib.suppress(ConnectionError):
            await proc.stdin.wait_closed()

    async def _write(self, proc: Process, prompt: str) -> bool:
        """Write ``prompt`` as one stream-json user message; False if the CLI is gone."""
        assert proc.stdin is not None
        line = {"type": "user", "message": {"role": "user", "content": prompt}}
        try:
            proc.stdin.write(json.dumps(line).encode() + b"\n")
            await proc.stdin.drain()
        except ConnectionError:
            log.debug("claude closed stdin before reading a message")
            return False
        return True

    async def _pump(self, proc: Process, steer: Steer) -> None:
        """Write what the room says into the open stdin until the CLI's first result, then
        close stdin (the CLI answers all it was given, then exits)."""
        assert proc.stdin is not None
        try:
            while not self.answered.is_set():
                waits = {
                    asyncio.ensure_future(steer.wait()),
                    asyncio.ensure_future(self.answered.wait()),
                }
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                if self.answered.is_set():
                    break
                prompt = await steer.take()
                if prompt is not None and not await self._write(proc, prompt):
                    break
        finally:
            steer.close()
            proc.stdin.close()

    async def _read_stdout(self, proc: Process) -> AsyncIterator[TurnEvent]:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:
                self.parser.note_garbage(f"<a line longer than {_LINE_LIMIT} bytes>")
                continue
            if not line:
                return
            for event in self.parser.feed_line(line):
                yield event
            if self.parser.result is not None:
                self.answered.set()
            session_id = self.parser.session_id
            if session_id is not None and session_id != self.stored:
                await self.provider.sessions.set(self.request.session, session_id)
                self.stored = session_id

    async def _read_stderr(self, proc: Process) -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            log.debug("claude[%d] stderr: %s", proc.pid, text)
            self.stderr.append(text)

    async def _watch(self, proc: Process) -> None:
        """Kill the tree once ``cancel`` is set or claude itself exited (children die too)."""
        waits = {
            asyncio.ensure_future(self.cancel.wait()),
            asyncio.ensure_future(exited(proc)),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.wait(waits)
        try:
            await kill_tree(proc, self.provider.timeout_kill_s)
        except KillError as exc:  # raised again by the turn's own kill_tree
            log.error("claude process tree survived: %s", exc)


async def _drain(proc: Process, reader: asyncio.Task[None]) -> None:
    """Read what is left in the dead tree's pipes so their transport closes cleanly."""
    try:
        async with asyncio.timeout(_DRAIN_S):
            if proc.stdout is not None:
                await proc.stdout.read()
            await reader
    except TimeoutError:
        log.warning("claude[%d] pipes stayed open after the kill", proc.pid)
    finally:
        reader.cancel()
