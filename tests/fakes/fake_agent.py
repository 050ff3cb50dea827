"""A fake coding agent CLI: reads its prompt on stdin, speaks claude's stream-json, and edits
and commits a file in its working directory (the item's worktree) with real git.

The behaviour is the first ``fake:<mode>`` marker in the prompt (an item's title or body),
else ``$FAKE_AGENT_MODE``, else ``commit``:

* ``commit`` — write ``result.txt`` ("good") and ``agent-<item>.txt``, commit, exit 0;
* ``bad`` — commit ``result.txt`` saying "bad" (a gate grepping for "good" fails);
* ``no-commit`` — say something and exit 0 without committing;
* ``rate-limit`` — report a hard rate limit (reset in 3 s) the first time, then ``commit``;
* ``hang`` — start a child ``sleep`` in the worktree, then print nothing more, forever;
* ``slow`` — ``commit`` after two seconds (keeps an agent slot busy);
* ``hang-once`` — the first time (per item, needs ``$FAKE_AGENT_DIR``): commit ``wip.txt``,
  say so three seconds later, then ``hang``; later times ``commit``;
* ``crash-on-resume`` — exit 3 before any output when given ``--resume``, else ``commit``;
* ``budget`` — report a result costing $99, then hang.

A QA agent's prompt (it starts "Review item") takes ``fake-qa:approve`` (the default) or
``fake-qa:reject``: its result ends with ``APPROVED`` or ``REJECTED: <reason>``.

With ``$FAKE_AGENT_DIR`` set, each call appends one JSON line (argv, cwd, pid, time, the
prompt) to ``calls.jsonl`` there, so a test sees every spawn.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def commit(item: str, text: str) -> None:
    Path("result.txt").write_text(f"{text}\n{time.time()}\n")  # a new commit each time
    Path(f"agent-{item}.txt").write_text(f"work on #{item}\n")
    git("add", "result.txt", f"agent-{item}.txt")
    git("-c", "user.name=Fake Agent", "-c", "user.email=agent@example.org",
        "commit", "-q", "-m", f"fake agent: #{item}")  # fmt: skip


def hang() -> None:
    subprocess.Popen(["sleep", "1000"], start_new_session=True)  # a grandchild in the worktree
    while True:
        time.sleep(1)


def main() -> int:
    prompt = sys.stdin.read()
    argv = sys.argv[1:]
    review = prompt.startswith("Review item")  # the QA role's default prompt
    marker = re.search(r"fake-qa:([a-z-]+)" if review else r"fake:([a-z-]+)", prompt)
    default = "approve" if review else os.environ.get("FAKE_AGENT_MODE", "commit")
    mode = marker.group(1) if marker else default
    found = re.search(r"#(\d+)", prompt)
    item = found.group(1) if found else "0"
    resume = argv[argv.index("--resume") + 1] if "--resume" in argv else None
    session = resume or str(uuid.uuid4())
    state = os.environ.get("FAKE_AGENT_DIR")
    if state:
        call = {"argv": argv, "cwd": os.getcwd(), "pid": os.getpid(), "ts": time.time(),
                "prompt": prompt, "mode": mode, "session": session}  # fmt: skip
        try:
            with open(Path(state) / "calls.jsonl", "a") as calls:
                calls.write(json.dumps(call) + "\n")
        except OSError:  # read-only inside a sandbox
            state = None
    if mode == "crash-on-resume" and resume:
        return 3
    emit({"type": "system", "subtype": "init", "session_id": session})
    if mode == "rate-limit" and state and not (Path(state) / "limited").exists():
        (Path(state) / "limited").touch()
        reset = (datetime.now(UTC) + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
        emit({"type": "rate_limit_event",
              "rate_limit_info": {"status": "rejected", "reset_at": reset}})  # fmt: skip
        hang()
    if mode == "hang":
        hang()
    if mode == "slow":
        time.sleep(2)
    if mode == "hang-once" and state and not (Path(state) / f"hung-{item}").exists():
        (Path(state) / f"hung-{item}").touch()
        Path("wip.txt").write_text("half done\n")
        git("add", "wip.txt")
        git("-c", "user.name=Fake Agent", "-c", "user.email=agent@example.org",
            "commit", "-q", "-m", f"fake agent: work in progress on #{item}")  # fmt: skip
        time.sleep(3)
        emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "WIP."}]}})
        hang()
    if mode == "budget":
        emit({"type": "result", "result": "spent", "total_cost_usd": 99.0, "num_turns": 1})
        hang()
    if mode in ("approve", "reject"):
        verdict = "APPROVED" if mode == "approve" else "REJECTED: the cart forgets items"
        emit({"type": "result", "result": f"## QA Report\nLooked at it.\n{verdict}",
              "total_cost_usd": 0.02})  # fmt: skip
        return 0
    tool = {"type": "tool_use", "name": "Bash", "input": {"command": "git commit"}}
    emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "On it."}, tool]}})
    if mode in ("commit", "bad", "rate-limit", "crash-on-resume", "hang-once", "slow"):
        commit(item, "bad" if mode == "bad" else "good")
    emit({"type": "result", "result": "done", "total_cost_usd": 0.01, "num_turns": 1,
          "is_error": False})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
