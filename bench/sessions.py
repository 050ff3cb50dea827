"""B6 session scale: 10,000 sessions with one message each, then idle; vs 100 sessions.

Every phase runs in its own child process (``python -m bench.sessions --child ...``) so that
memory figures start from a clean interpreter and one phase's allocator high-water mark does
not leak into another's.

* Time (child ``timing``): messages go through ingress → journal (SQLite file, durable) →
  dispatcher → instant provider in *waves* of ``WAVE`` concurrent messages, each to a new
  session; a wave ends when all of its turns have finished (``finish_turn`` committed).
  Per-message time = wave time / wave size. One stack grows to 10,000 sessions (100 waves);
  interleaved with it, the baseline runs ``BASELINE_REPS`` times on a fresh database and
  dispatcher each (a small warm-up wave, then one measured wave of 100 new sessions), so
  the machine's noise hits both alike. The coalesce window is 0: the figure is work, not
  waiting.
* Memory (children ``held`` and ``control``): RSS after a warm-up and ``gc.collect()``,
  then again once the 10,000 sessions are idle and still held (ttl 1 h). The control does
  the same work with a 50 ms ttl, so its sessions are evicted as it goes: its RSS growth is
  what the journal (SQLite page cache), the allocator and everything but the held sessions
  cost. RSS per idle session = (held growth − control growth) / 10,000.
* tracemalloc (child ``traced``, ``TRACED_SESSIONS`` sessions to keep it quick: tracing
  makes every allocation several times slower): Python-heap bytes per idle session, in all
  and for the dispatcher map alone (allocations made in ``bot/dispatcher.py``, the session
  key string, and asyncio's eviction timer handle and heap slot).
* TTL: the control reports how many sessions remain once its ttl has passed.

Run alone: ``python -m bench.sessions``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import (
    FREE_TEXT,
    Stack,
    bench_settings,
    emit,
    machine,
    median,
    progress,
    quiet_logs,
    rnd,
    rss_bytes,
)
from bot.messages import InboundMessage

NAME = "session_scale"
SESSIONS = 10_000
SMALL = 100
WAVE = 100
WARM = 10
BASELINE_REPS = 10
TRACED_SESSIONS = 2_000
HELD_TTL_S = 3600.0
CONTROL_TTL_S = 0.05
TARGET = {"per_message_time_ratio": "<= 1.5", "rss_per_idle_session": "< 10 KB"}
MAP_FILES = ("bot/dispatcher.py", "bot/messages.py", "asyncio/events.py", "asyncio/base_events.py")
"""Where the dispatcher map's allocations are made (tracemalloc, one frame): the session
record, its list and callbacks; the session key string; asyncio's TimerHandle (eviction) and
its slot in the loop's timer heap."""


async def _wave(stack: Stack, first: int, size: int, prefix: str) -> float:
    """Feed ``size`` messages to ``size`` new sessions at once; wait for every turn to end."""
    loop = asyncio.get_running_loop()
    target = stack.turns_finished + size
    started = time.perf_counter()
    now = loop.time()
    await asyncio.gather(
        *(
            stack.ingress.feed(
                InboundMessage(
                    "bench",
                    f"{prefix}-{n}",
                    f"user-{n % 7}",
                    f"{prefix}-ev-{n}",
                    now,
                    FREE_TEXT.format(n=n),
                    mentioned=True,
                )
            )
            for n in range(first, first + size)
        )
    )
    if not await stack.wait_turns(target, limit_s=15.0):
        raise RuntimeError(f"wave {prefix}/{first}: turns did not finish (see stderr)")
    return time.perf_counter() - started


async def _waves(stack: Stack, sessions: int) -> list[float]:
    return [
        await _wave(stack, first, min(WAVE, sessions - first), "s")
        for first in range(0, sessions, WAVE)
    ]


async def _timing(sessions: int, reps: int) -> dict[str, Any]:
    """One stack grows to ``sessions``; fresh 100-session baselines run in between."""
    waves: list[float] = []
    baseline: list[float] = []
    every = max(1, sessions // WAVE // reps)
    with tempfile.TemporaryDirectory(prefix="musher-b6t-") as tmp:
        big = await Stack.open(Path(tmp), bench_settings(0, idle_ttl_s=HELD_TTL_S), record=False)
        try:
            await _wave(big, 0, WARM, "warm")
            for index, first in enumerate(range(0, sessions, WAVE)):
                if index % every == 0 and len(baseline) < reps:
                    baseline.append(await _baseline_rep())
                waves.append(await _wave(big, first, min(WAVE, sessions - first), "s"))
            held = big.core.dispatcher.session_count()
        finally:
            await big.aclose()
    return {"wave_s": waves, "baseline_wave_s": baseline, "held": held}


async def _baseline_rep() -> float:
    with tempfile.TemporaryDirectory(prefix="musher-b6s-") as tmp:
        stack = await Stack.open(Path(tmp), bench_settings(0, idle_ttl_s=HELD_TTL_S), record=False)
        try:
            await _wave(stack, 0, WARM, "warm")
            return await _wave(stack, 0, SMALL, "s")
        finally:
            await stack.aclose()


async def _memory(sessions: int, ttl: float, trace: bool) -> dict[str, Any]:
    """Warm up, measure, push ``sessions`` sessions in waves, let them idle, measure."""
    with tempfile.TemporaryDirectory(prefix="musher-b6m-") as tmp:
        stack = await Stack.open(Path(tmp), bench_settings(0, idle_ttl_s=ttl), record=False)
        dispatcher = stack.core.dispatcher
        try:
            await _wave(stack, 0, WAVE, "warm")
            if ttl < 1:
                await asyncio.sleep(ttl + 0.1)  # the control starts from an empty map too
            if trace:
                tracemalloc.start()
            gc.collect()
            rss0 = rss_bytes()
            snap0 = tracemalloc.take_snapshot() if trace else None
            held0 = dispatcher.session_count()
            waves = await _waves(stack, sessions)
            await asyncio.sleep(0)  # the last done-callbacks mark their sessions idle
            gc.collect()
            rss1 = rss_bytes()
            held1 = dispatcher.session_count()
            by_file: dict[str, int] = {}
            if snap0 is not None:
                snap1 = tracemalloc.take_snapshot()
                tracemalloc.stop()
                for stat in snap1.compare_to(snap0, "filename"):
                    name = "/".join(Path(stat.traceback[0].filename).parts[-2:])
                    by_file[name] = by_file.get(name, 0) + stat.size_diff
            after_ttl = held1
            if ttl < 1:
                await asyncio.sleep(ttl + 0.25)
                after_ttl = dispatcher.session_count()
            return {
                "sessions": sessions,
                "ttl_s": ttl,
                "total_s": sum(waves),
                "rss_before": rss0,
                "rss_after": rss1,
                "traced_by_file": by_file,
                "held_new": held1 - held0,
                "sessions_after_ttl": after_ttl,
                "db_bytes": _db_bytes(Path(tmp)),
            }
        finally:
            await stack.aclose()


def _db_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("musher.db*"))


def _child(args: list[str]) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its last stdout line is its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sessions", "--child", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _child_main(kind: str) -> dict[str, Any]:
    quiet_logs()
    if kind == "timing":
        return asyncio.run(_timing(SESSIONS, BASELINE_REPS))
    if kind == "held":
        return asyncio.run(_memory(SESSIONS, HELD_TTL_S, False))
    if kind == "control":
        return asyncio.run(_memory(SESSIONS, CONTROL_TTL_S, False))
    if kind == "traced":
        return asyncio.run(_memory(TRACED_SESSIONS, HELD_TTL_S, True))
    raise SystemExit(f"unknown child {kind!r}")


def run() -> dict[str, Any]:
    started = time.monotonic()
    progress(f"B6 timing: {SESSIONS} sessions, {BASELINE_REPS} baselines of {SMALL} interleaved")
    timing = _child(["timing"])
    progress(f"B6 memory: {SESSIONS} sessions held (ttl {HELD_TTL_S:g} s)")
    held = _child(["held"])
    progress(f"B6 memory: {SESSIONS} sessions, control (ttl {CONTROL_TTL_S:g} s)")
    control = _child(["control"])
    progress(f"B6 tracemalloc: {TRACED_SESSIONS} sessions held")
    traced = _child(["traced"])

    waves = [w / WAVE for w in timing["wave_s"]]
    base = [w / SMALL for w in timing["baseline_wave_s"]]
    per_msg_small = median(base)
    per_msg_10k = median(waves)
    per_msg_last = median(waves[-10:])
    held_growth = held["rss_after"] - held["rss_before"]
    control_growth = control["rss_after"] - control["rss_before"]
    by_file: dict[str, int] = traced["traced_by_file"]
    traced_map = sum(v for k, v in by_file.items() if k in MAP_FILES)
    top = sorted(by_file.items(), key=lambda kv: -kv[1])[:6]
    figures = {
        "per_message_ms_100": rnd(per_msg_small * 1000),
        "per_message_ms_10k": rnd(per_msg_10k * 1000),
        "per_message_time_ratio": rnd(per_msg_10k / per_msg_small),
        "per_message_ms_10k_last_10_waves": rnd(per_msg_last * 1000),
        "per_message_time_ratio_last_10_waves": rnd(per_msg_last / per_msg_small),
        "per_message_ms_100_reps": [rnd(v * 1000) for v in base],
        "rss_per_idle_session_bytes": rnd((held_growth - control_growth) / SESSIONS, 0),
        "rss_growth_held_mb": rnd(held_growth / 2**20, 2),
        "rss_growth_control_mb": rnd(control_growth / 2**20, 2),
        "rss_after_10k_idle_mb": rnd(held["rss_after"] / 2**20, 1),
        "tracemalloc_map_bytes_per_idle_session": rnd(traced_map / TRACED_SESSIONS, 0),
        "tracemalloc_all_bytes_per_idle_session": rnd(sum(by_file.values()) / TRACED_SESSIONS, 0),
        "tracemalloc_top_files_bytes_per_session": {k: rnd(v / TRACED_SESSIONS, 0) for k, v in top},
        "sessions_held_after_10k": held["held_new"],
        "sessions_held_after_10k_control": control["held_new"],
        "sessions_after_ttl": control["sessions_after_ttl"],
        "db_bytes_after_10k": held["db_bytes"],
    }
    params = {
        "sessions": SESSIONS,
        "baseline_sessions": SMALL,
        "wave": WAVE,
        "warm_up_messages": WARM,
        "baseline_reps": BASELINE_REPS,
        "window_ms": 0,
        "held_ttl_s": HELD_TTL_S,
        "control_ttl_s": CONTROL_TTL_S,
        "traced_sessions": TRACED_SESSIONS,
        "journal": "SQLite file in a temp dir, WAL, synchronous=FULL, group commit",
        "provider": "instant (yields Done(), no reply text)",
        "per_message_time": "wave wall time / wave size (a wave = 100 concurrent messages to "
        "new sessions, until their turns finished); 10k = median over its 100 waves; 100 = "
        "median over fresh-database baselines interleaved with the 10k run",
        "rss": "/proc/self/statm after gc.collect(); per idle session = "
        "(held growth - control growth) / sessions; each phase in its own child process",
        "tracemalloc": "Python allocations only; map = " + ", ".join(MAP_FILES),
        "target": TARGET,
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sessions")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child_main(args.child)), flush=True)
        return
    result = run()
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
