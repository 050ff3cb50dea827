"""B5 turn spawn: batch close → a fake ``claude`` has read its prompt, vs a bare subprocess.

Ours: the dispatcher hands a batch to the turn runner (journal write of the turn, typing
indicator, provider argv, MCP config, process group spawn, prompt on stdin). Baseline: a bare
``asyncio.create_subprocess_exec`` of the same script with the same prompt on stdin. The
script stamps ``time.monotonic()`` (system-wide on Linux) once stdin is read, so both sides
measure to the same event. Prints one JSON line; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.daemon import build_core
from bot.db import Database
from bot.messages import QueuedText
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline.keys import load_or_create
from pipeline.store import OpStore

RUNS = 30
SCRIPT = r"""
import json, sys, time
sys.stdin.read()
stamp = time.monotonic()
with open(sys.argv[-1], "a") as out:
    out.write(f"{stamp}\n")
print(json.dumps({"type": "system", "subtype": "init", "session_id": "bench"}), flush=True)
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                  "session_id": "bench", "total_cost_usd": 0, "usage": {}}), flush=True)
"""


def last_stamp(path: Path) -> float:
    return float(path.read_text().splitlines()[-1])


async def bare(script: Path, stamps: Path) -> float:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(stamps),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    await proc.communicate(b"alice: hello")
    return last_stamp(stamps) - start


async def measure(tmp: Path, script: Path, stamps: Path) -> tuple[list[float], list[float]]:
    """Alternate bare and ours, so drift on a noisy machine hits both alike."""
    env = {
        "MUSHER_LLM__PROVIDER": "claude-cli",
        "MUSHER_LLM__CLAUDE_CLI__COMMAND": json.dumps([sys.executable, str(script)]),
        "MUSHER_LLM__CLAUDE_CLI__ARGS": json.dumps([str(stamps)]),
    }
    settings = load_settings(None, env)
    db = await Database.open(tmp / "musher.db", DAEMON_SCHEMA)
    store = await OpStore.open(db, load_or_create(tmp))
    core = build_core(settings, db, store)
    runner = core.runner
    base, samples = [], []
    try:
        for n in range(RUNS):
            base.append(await bare(script, stamps))
            start = time.monotonic()
            await runner.run(f"web:room{n}", [QueuedText("alice", "hello", n + 1)])
            samples.append(last_stamp(stamps) - start)
    finally:
        await core.dispatcher.aclose()
        await core.provider.aclose()
        await db.aclose()
    return base, samples


async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        script = tmp / "fake_claude.py"
        script.write_text(SCRIPT)
        stamps = tmp / "stamps.txt"
        stamps.touch()
        base, ours_ms = await measure(tmp, script, stamps)
    p50_base = statistics.median(base) * 1000
    p50_ours = statistics.median(ours_ms) * 1000
    figures = {
        "bare_p50_ms": round(p50_base, 2),
        "ours_p50_ms": round(p50_ours, 2),
        "ratio_p50": round(p50_ours / p50_base, 3),
        "target_ratio": 1.2,
    }
    params = {"runs": RUNS, "prompt_bytes": 12, "journal": "sqlite synchronous=FULL"}
    print(json.dumps({"bench": "B5_turn_spawn", "params": params, "figures": figures}), flush=True)


if __name__ == "__main__":
    logging.getLogger("musher").setLevel(logging.ERROR)  # "no transport": replies only logged
    asyncio.run(main())
