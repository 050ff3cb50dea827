"""B2's ceiling: how many messages per second the daemon's core takes with no HTTP at all.

The web B2 figure is requests/s of the whole daemon against a bare aiohttp handler, each in
one process. This measures, on the same machine in the same run, the part of the daemon
that any intake would have to feed: ``Ingress.feed`` (the message journaled durably: WAL,
``synchronous=FULL``, group commit) → dispatcher → a turn per burst, with ``concurrency``
feeders posting back to back (closed loop, as the load generator's connections do) over
:data:`bench.intake.ROOMS` rooms in bursts (:func:`bench.intake.spread`).

It is an upper bound for the daemon over HTTP: no request is parsed or answered, and the
turns say nothing (the bench's instant provider), so no reply is written. Divided by the
bare handler's requests/s it is the most B2's ratio could be with HTTP costing nothing.

Run alone (its own process, as the daemon is): ``python -m bench.core_ceiling``; it prints
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FREE_TEXT, Stack, bench_settings, emit, quiet_logs, rnd
from bench.intake import ROOMS, WINDOW_MS, spread, sweep_arg
from bot.cli import collect_cycles_less
from bot.messages import InboundMessage

NAME = "http_intake_core_ceiling"
CONCURRENCY = (64, 128)
WARMUP_S = 0.5
DURATION_S = 3.0


async def saturate(concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    """Messages/s and CPU µs per message of the core at ``concurrency`` feeders."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="musher-b2-core-") as tmp:
        stack = await Stack.open(Path(tmp), bench_settings(WINDOW_MS), record=False)
        fed = 0
        running = True

        async def feeder(w: int) -> None:
            nonlocal fed
            i = 0
            while running:
                room = f"room-{spread(w, i, ROOMS, concurrency)}"
                text = FREE_TEXT.format(n=i)
                sender, event = f"user-{w % 7}", f"{w}-{i}"
                message = InboundMessage("bench", room, sender, event, time.time(), text, True)
                await stack.ingress.feed(message)
                i += 1
                fed += 1

        try:
            feeders = [loop.create_task(feeder(w)) for w in range(concurrency)]
            await asyncio.sleep(warmup)
            fed0, cpu0, t0 = fed, time.process_time(), time.perf_counter()
            await asyncio.sleep(duration)
            count, cpu, span = fed - fed0, time.process_time() - cpu0, time.perf_counter() - t0
            turns = stack.provider.turns_started
            running = False
            await asyncio.gather(*feeders)
            await stack.wait_turns(stack.provider.turns_started, 30.0)
        finally:
            await stack.aclose()
    return {
        "concurrency": concurrency,
        "msgs_per_s": count / span,
        "cpu_us_per_msg": cpu / count * 1e6 if count else None,
        "msgs_per_turn": fed / turns if turns else None,
    }


def run(concurrency: tuple[int, ...], warmup: float, duration: float) -> dict[str, Any]:
    """The best point of the sweep (highest messages/s) and the sweep itself."""
    quiet_logs()
    collect_cycles_less()  # as ``musher run`` sets the cycle collector up
    points = [asyncio.run(saturate(c, warmup, duration)) for c in concurrency]
    best = max(points, key=lambda p: float(p["msgs_per_s"]))
    figures = {
        "core_msgs_per_s": rnd(best["msgs_per_s"], 1),
        "core_cpu_us_per_msg": rnd(best["cpu_us_per_msg"] or float("nan"), 1),
        "core_best_concurrency": best["concurrency"],
        "core_sweep": {
            str(p["concurrency"]): {
                "msgs_per_s": rnd(p["msgs_per_s"], 1),
                "cpu_us_per_msg": rnd(p["cpu_us_per_msg"] or float("nan"), 1),
                "msgs_per_turn": rnd(p["msgs_per_turn"] or float("nan"), 2),
            }
            for p in points
        },
    }
    params = {"concurrency": list(concurrency), "warmup_s": warmup, "duration_s": duration}
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core_ceiling")
    parser.add_argument("--sweep", type=sweep_arg, default=CONCURRENCY, help="e.g. 64,128")
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds discarded")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds measured")
    args = parser.parse_args()
    result = run(args.sweep, args.warmup, args.duration)
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
