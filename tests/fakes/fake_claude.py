"""A fake ``claude`` CLI: the flags and stream-json events of Claude Code 2.1 in print mode.

Standard library only, so any ``python3`` can run it (``tests/fakes/claude`` is the
executable wrapper). Sessions live in ``$FAKE_CLAUDE_STATE`` (one ``<id>.jsonl`` per
conversation), so ``--resume`` works across processes; an unknown id behaves like the real
CLI (an ``error_during_execution`` result on stdout, ``No conversation found with session
ID: …`` on stderr, exit 1). Every call appends ``{"argv", "stdin", "cwd", "pid", "env",
"mcp_config"}`` to ``$FAKE_CLAUDE_STATE/calls.jsonl``.

Behaviours, chosen by a word in the prompt:

* ``SLEEP``: says ``working``, starts a grandchild (``sleep``), writes ``{"pid", "grandchild"}``
  to ``$FAKE_CLAUDE_STATE/pids.json`` and sleeps for ten minutes.
* ``CRASH``: writes 25 numbered lines to stderr and exits 3 with no result.
* ``ERROR_MAX_TURNS``: a result with subtype ``error_max_turns``; exit 1.
* ``PARAS``: three paragraphs spread over four assistant messages (one paragraph spans two).
* ``LINGER``: answers normally but leaves a grandchild (``sleep``) holding stdout and
  stderr open; its pid goes to ``pids.json`` as for ``SLEEP``.
* ``TOOL``: a ``tool_use`` block, the ``user`` ``tool_result``, then a final text.
* ``GARBAGE``: a line that is not JSON, then exit 0 without a result.
* ``ASK[<command>]``: wants to run ``<command>`` with its ``Bash`` tool. With
  ``--permission-prompt-tool`` it asks musher's permission route (the URL and token of the
  ``--mcp-config``) as the real CLI asks that tool, runs the command in its cwd when allowed
  and answers ``ran: <command>``, else ``refused: <message>``; without it, ``not allowed``.
* ``STEER`` (with ``--input-format stream-json``): a ``tool_use``, then it waits up to ten
  seconds for more user messages on stdin (as the real CLI reads them at a tool boundary),
  and answers ``[fake turn N] you said: <prompt> | then: <message> | …``.
* anything else: ``[fake turn N] you said: <prompt>`` (N counts the session's turns).

With ``--input-format stream-json`` stdin carries ``{"type": "user", "message": {"role":
"user", "content": …}}`` lines: the first is the prompt; every line still unread after an
answer is answered in turn (one ``result`` each) until stdin closes, as the real CLI does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

VERSION = "2.1.197 (Claude Code) [fake]"
MODEL = "claude-fake-1"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="claude", add_help=False)
    parser.add_argument("-p", "--print", dest="print_mode", action="store_true")
    parser.add_argument("--output-format", default="text", choices=["text", "json", "stream-json"])
    parser.add_argument("--input-format", default="text", choices=["text", "stream-json"])
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("-r", "--resume")
    parser.add_argument("--session-id")
    parser.add_argument("--fork-session", action="store_true")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--mcp-config", nargs="+")
    parser.add_argument("--permission-mode", default="default")
    parser.add_argument("--permission-prompt-tool")
    parser.add_argument("--max-turns", type=int)
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("prompt", nargs="?")
    args, _unknown = parser.parse_known_args(argv)
    return args


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def state_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"fake-claude-{os.getuid()}"
    path = Path(os.environ.get("FAKE_CLAUDE_STATE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_call(state: Path, argv: list[str], prompt: str, mcp: list[str] | None) -> None:
    configs = []
    for item in mcp or []:
        source = Path(item)
        configs.append(json.loads(source.read_text() if source.is_file() else item))
    call = {
        "argv": argv,
        "stdin": prompt,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("MUSHER_TEST_")},
        "mcp_config": configs,
    }
    with (state / "calls.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(call) + "\n")


def usage(turn: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": 10 * turn,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3 if turn else 0,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
    }


def result(session_id: str, subtype: str, turn: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success",
        "duration_ms": 5,
        "duration_api_ms": 3,
        "num_turns": turn,
        "stop_reason": "end_turn" if subtype == "success" else None,
        "session_id": session_id,
        "total_cost_usd": 0.0025 * turn if subtype == "success" else 0,
        "usage": usage(turn, 4) if subtype == "success" else usage(0, 0),
        "modelUsage": {},
        "permission_denials": [],
        "uuid": str(uuid.uuid4()),
        **extra,
    }


def init(session_id: str, model: str) -> dict[str, Any]:
    return {
        "type": "system",
        "subtype": "init",
        "cwd": os.getcwd(),
        "session_id": session_id,
        "tools": ["Bash", "Read", "Edit", "Write"],
        "mcp_servers": [],
        "model": model,
        "permissionMode": "default",
        "apiKeySource": "ANTHROPIC_API_KEY",
        "claude_code_version": "2.1.197",
        "uuid": str(uuid.uuid4()),
    }


def message(session_id: str, role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, "content": content}
    if role == "assistant":
        body |= {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "model": MODEL}
        body |= {"stop_reason": None, "stop_sequence": None, "usage": usage(1, 1)}
    return {
        "type": role,
        "message": body,
        "parent_tool_use_id": None,
        "session_id": session_id,
        "uuid": str(uuid.uuid4()),
    }


def say(session_id: str, *texts: str) -> None:
    for text in texts:
        emit(message(session_id, "assistant", [{"type": "text", "text": text}]))


def unknown_session(session_id: str) -> int:
    text = f"No conversation found with session ID: {session_id}"
    emit(result(session_id, "error_during_execution", 0, errors=[text]))
    print(text, file=sys.stderr)
    return 1


def grandchild(state: Path) -> None:
    """Start a ``sleep`` that inherits stdout and stderr; note its pid and ours."""
    child = subprocess.Popen(["sleep", "600"])
    partial = state / f"pids.json.{os.getpid()}"
    partial.write_text(json.dumps({"pid": os.getpid(), "grandchild": child.pid}))
    partial.rename(state / "pids.json")  # atomically: tests poll for the file


def sleep_forever(state: Path, session_id: str) -> int:
    say(session_id, "working")
    grandchild(state)
    time.sleep(600)
    return 0


def crash() -> int:
    for n in range(1, 26):
        print(f"crash line {n}", file=sys.stderr)
    return 3


def ask_permission(args: argparse.Namespace, command: str) -> tuple[bool, str]:
    """Ask musher's permission route, as the real CLI calls its permission prompt tool."""
    if not args.permission_prompt_tool:
        return False, "not allowed"
    source = Path(args.mcp_config[0])
    config = json.loads(source.read_text() if source.is_file() else args.mcp_config[0])
    env = config["mcpServers"]["musher"]["env"]
    body = json.dumps({"tool_name": "Bash", "input": {"command": command}}).encode()
    request = urllib.request.Request(
        env["MUSHER_MCP_URL"] + "/mcp/v1/permission",
        data=body,
        headers={
            "Authorization": f"Bearer {env['MUSHER_MCP_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        decision = json.loads(response.read())
    if decision["behavior"] == "allow":
        subprocess.run(["sh", "-c", command], check=False)
        return True, f"ran: {command}"
    return False, f"refused: {decision['message']}"


def read_message(line: str) -> str:
    """The text of one stream-json user message."""
    content = json.loads(line)["message"]["content"]
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def steered(session_id: str, prompt: str, turn: int) -> tuple[int, str]:
    """Wait at a tool boundary for what the room says meanwhile, then answer it all."""
    call = {"type": "tool_use", "id": "toolu_s", "name": "status", "input": {}}
    emit(message(session_id, "assistant", [call]))
    more: list[str] = []
    deadline = time.monotonic() + 10
    while not more and time.monotonic() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        while ready:
            line = sys.stdin.readline()
            if not line:
                break
            more.append(read_message(line))
            ready, _, _ = select.select([sys.stdin], [], [], 0)
    done = {"type": "tool_result", "tool_use_id": "toolu_s", "content": "nothing new"}
    emit(message(session_id, "user", [done]))
    reply = " | then: ".join([f"[fake turn {turn}] you said: {prompt.strip()}", *more])
    say(session_id, reply)
    emit(result(session_id, "success", turn, result=reply))
    return 0, reply


def answer(session_id: str, prompt: str, turn: int, args: argparse.Namespace) -> tuple[int, str]:
    """Emit the assistant and result events of a normal turn; returns (exit code, reply)."""
    if "STEER" in prompt and args.input_format == "stream-json":
        return steered(session_id, prompt, turn)
    if "ERROR_MAX_TURNS" in prompt:
        say(session_id, "thinking hard")
        emit(result(session_id, "error_max_turns", turn, errors=["Reached maximum turns (1)"]))
        return 1, "thinking hard"
    if "GARBAGE" in prompt:
        print("this is not json", flush=True)
        return 0, ""
    if "PARAS" in prompt:
        texts = ["First para", "graph.\n\nSecond paragraph.\n\n", "Third ", "paragraph."]
    elif asked := re.search(r"ASK\[([^\]]*)\]", prompt):
        call = {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": ""}}
        call["input"] = {"command": asked.group(1)}
        emit(message(session_id, "assistant", [call]))
        allowed, said = ask_permission(args, asked.group(1))
        done = {"type": "tool_result", "tool_use_id": "toolu_2", "content": said}
        emit(message(session_id, "user", [{**done, "is_error": not allowed}]))
        texts = [said]
    elif "TOOL" in prompt:
        call = {"type": "tool_use", "id": "toolu_1", "name": "status", "input": {"n": 12}}
        emit(message(session_id, "assistant", [{"type": "text", "text": "Let me look."}, call]))
        done = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "#12 is in qa"}
        emit(message(session_id, "user", [done]))
        texts = ["It is in QA."]
    else:
        texts = [f"[fake turn {turn}] you said: {prompt.strip()}"]
    say(session_id, *texts)
    reply = "".join(texts)
    emit(result(session_id, "success", turn, result=reply))
    return 0, reply


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.version:
        print(VERSION)
        return 0
    if args.output_format == "stream-json" and args.print_mode and not args.verbose:
        print(
            "Error: When using --print, --output-format=stream-json requires --verbose",
            file=sys.stderr,
        )
        return 1
    if args.output_format != "stream-json" or not args.print_mode:
        print("fake claude: only -p --output-format stream-json is faked", file=sys.stderr)
        return 2
    streaming = args.input_format == "stream-json"
    if args.prompt is not None:
        prompt = args.prompt
    elif streaming:
        first = sys.stdin.readline()
        prompt = read_message(first) if first else ""
    else:
        prompt = sys.stdin.read()
    state = state_dir()
    record_call(state, argv, prompt, args.mcp_config)
    history: list[dict[str, str]] = []
    if args.resume:
        transcript = state / f"{args.resume}.jsonl"
        if not transcript.is_file():
            return unknown_session(args.resume)
        history = [json.loads(line) for line in transcript.read_text().splitlines()]
    session_id = args.resume or args.session_id or str(uuid.uuid4())
    if "CRASH" in prompt:
        return crash()
    emit(init(session_id, args.model))
    if "SLEEP" in prompt:
        return sleep_forever(state, session_id)
    if "LINGER" in prompt:
        grandchild(state)
    turn = 1 + sum(1 for entry in history if entry["role"] == "user")
    while True:
        code, reply = answer(session_id, prompt, turn, args)
        with (state / f"{session_id}.jsonl").open("a", encoding="utf-8") as transcript_file:
            for role, content in (("user", prompt), ("assistant", reply)):
                transcript_file.write(json.dumps({"role": role, "content": content}) + "\n")
        line = sys.stdin.readline() if streaming and code == 0 else ""
        if not line:
            return code
        prompt, turn = read_message(line), turn + 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
