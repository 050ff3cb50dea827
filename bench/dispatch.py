"""B1 dispatch overhead: bursts through ingress + journal + dispatcher into an instant provider.

Workload: messages arrive at a fixed rate (paced on the loop clock, open loop: each message
is handed to ``Ingress.feed`` in its own task, as a transport would) in bursts of
``burst`` consecutive messages per session, over ``sessions`` sessions visited in turn. The
journal is a real SQLite file (WAL, ``synchronous=FULL``, group commit) in a temp dir.

Figure, per batch: (provider ``run`` start − arrival of the batch's last message) − window.
The baseline is the coalesce window itself (the physical limit): what is reported is what
musher adds on top of it. Two parts of it are reported too: ``ack`` (arrival → ``feed``
returned, i.e. the durable journal commit before the dispatcher sees the message) and
``close_to_start`` (the last message's submit + window → provider start: timer lateness,
task start and the ``turns`` row committed before the LLM is called, D6).

The process sets the cycle collector up as ``musher run`` does (``bot.cli.collect_cycles_less``):
with Python's default thresholds its collections would be part of the tail measured here,
and the daemon does not have them.

Run alone: ``python -m bench.dispatch``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    FREE_TEXT,
    Stack,
    bench_settings,
    emit,
    machine,
    median,
    percentile,
    progress,
    quiet_logs,
    rnd,
)
from bot.cli import GC_THRESHOLD, collect_cycles_less
from bot.messages import InboundMessage
from bot.transport import FeedResult

NAME = "dispatch_overhead"
RATES = (100, 1000, 5000)
SESSIONS = 1000
BURST = 3
WINDOW_MS = 50
REPS = 5
DURATION_S = {100: 3.0, 1000: 2.0, 5000: 1.0}
"""Seconds of traffic per repetition: ≥ 100 batches per repetition at the lowest rate, and
the whole benchmark (3 rates x 5 repetitions) stays well under a minute."""
TARGET = "p99 < 5 ms at 1,000 msg/s"


@dataclass
class RepResult:
    rate: int
    messages: int
    achieved_rate: float
    processed_rate: float = 0.0
    overheads_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    close_to_start_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lost: int = 0
    not_accepted: int = 0


async def _one_rep(rate: int, messages: int, window_ms: int) -> RepResult:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="musher-b1-") as tmp:
        settings = bench_settings(window_ms)
        stack = await Stack.open(Path(tmp), settings)
        try:
            # Warm the path (first statements compile, first fsync) on sessions not measured.
            for k in range(5):
                await stack.ingress.feed(
                    InboundMessage("bench", "warm", "w", f"warm-{k}", loop.time(), "warm up", True)
                )
            # every warm-up message answered (on a busy machine they may take two batches)
            await stack.wait_messages(5, 10.0)
            await stack.wait_turns(stack.provider.turns_started, 10.0)
            stack.provider.starts.clear()
            seen0 = stack.provider.messages_seen

            arrival = [0.0] * messages
            acked = [0.0] * messages
            results: list[FeedResult] = []

            async def send(i: int, msg: InboundMessage) -> None:
                results.append(await stack.ingress.feed(msg))
                acked[i] = loop.time()

            tasks: set[asyncio.Task[None]] = set()
            t0 = loop.time() + 0.01
            for i in range(messages):
                target = t0 + i / rate
                now = loop.time()
                if now < target:
                    await asyncio.sleep(target - now)
                    now = loop.time()
                elif i % 8 == 0:
                    await asyncio.sleep(0)  # behind schedule: still let the feeds run
                    now = loop.time()
                session = (i // BURST) % SESSIONS
                arrival[i] = now
                msg = InboundMessage(
                    "bench",
                    f"room-{session}",
                    f"user-{session % 7}",
                    f"ev-{i}",
                    now,  # ts carries the loop-clock arrival into the provider's batch
                    FREE_TEXT.format(n=i),
                    mentioned=True,
                )
                task = loop.create_task(send(i, msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent_span = arrival[-1] - arrival[0]
            if tasks:
                await asyncio.gather(*tasks)
            ok = await stack.wait_messages(seen0 + messages, limit_s=30.0)
            await stack.wait_turns(stack.provider.turns_started, limit_s=30.0)
            result = RepResult(rate, messages, (messages - 1) / sent_span if sent_span else 0)
            result.not_accepted = sum(1 for r in results if r is not FeedResult.ACCEPTED)
            result.lost = 0 if ok else seen0 + messages - stack.provider.messages_seen
            window_s = window_ms / 1000
            if stack.provider.starts:
                span = max(s.at for s in stack.provider.starts) - arrival[0]
                result.processed_rate = messages / span if span > 0 else 0.0
            for started in stack.provider.starts:
                last = max(started.batch, key=lambda m: m.ts)
                index = int(last.text.rsplit(" ", 1)[1])
                result.overheads_ms.append((started.at - last.ts - window_s) * 1000)
                result.ack_ms.append((acked[index] - arrival[index]) * 1000)
                result.close_to_start_ms.append((started.at - acked[index] - window_s) * 1000)
                result.batch_sizes.append(len(started.batch))
            return result
        finally:
            await stack.aclose()


def _summary(reps: list[RepResult]) -> dict[str, Any]:
    pooled = [v for r in reps for v in r.overheads_ms]
    ack = [v for r in reps for v in r.ack_ms]
    close = [v for r in reps for v in r.close_to_start_ms]
    sizes = [v for r in reps for v in r.batch_sizes]
    return {
        "achieved_rate": rnd(median(r.achieved_rate for r in reps), 1),
        "processed_rate": rnd(median(r.processed_rate for r in reps), 1),
        "batches_per_rep": rnd(median(len(r.overheads_ms) for r in reps), 0),
        "batches_total": len(pooled),
        "mean_batch_size": rnd(sum(sizes) / len(sizes), 2) if sizes else None,
        "overhead_p50_ms": rnd(median(percentile(r.overheads_ms, 50) for r in reps)),
        "overhead_p99_ms": rnd(median(percentile(r.overheads_ms, 99) for r in reps)),
        "overhead_p99_ms_reps": [rnd(percentile(r.overheads_ms, 99)) for r in reps],
        "overhead_pooled_p50_ms": rnd(percentile(pooled, 50)),
        "overhead_pooled_p99_ms": rnd(percentile(pooled, 99)),
        "overhead_max_ms": rnd(max(pooled)) if pooled else None,
        "ack_p50_ms": rnd(percentile(ack, 50)),
        "ack_p99_ms": rnd(percentile(ack, 99)),
        "close_to_start_p50_ms": rnd(percentile(close, 50)),
        "close_to_start_p99_ms": rnd(percentile(close, 99)),
        "messages_lost": sum(r.lost for r in reps),
        "messages_not_accepted": sum(r.not_accepted for r in reps),
    }


async def run(reps: int = REPS) -> dict[str, Any]:
    quiet_logs()
    per_rate: dict[str, Any] = {}
    started = time.monotonic()
    for rate in RATES:
        messages = int(rate * DURATION_S[rate])
        results = []
        for rep in range(reps):
            progress(f"B1 rate {rate}/s rep {rep + 1}/{reps} ({messages} messages)")
            results.append(await _one_rep(rate, messages, WINDOW_MS))
        per_rate[str(rate)] = _summary(results)
    params = {
        "rates_per_s": list(RATES),
        "sessions": SESSIONS,
        "burst": BURST,
        "burst_layout": "message i goes to session (i // burst) % sessions",
        "window_ms": WINDOW_MS,
        "max_wait_ms": 7500,
        "busy_mode": "collect",
        "seconds_per_rep": {str(k): v for k, v in DURATION_S.items()},
        "reps": reps,
        "journal": "SQLite file in a temp dir, WAL, synchronous=FULL, group commit",
        "gc_threshold": list(GC_THRESHOLD),
        "provider": "instant: records loop.time() when run starts, yields Done()",
        "sender": "in-process, paced on the loop clock, one feed task per message",
        "achieved_rate": "messages sent / sending span (the offered load)",
        "processed_rate": "messages / (last provider start - first arrival): below the "
        "offered rate, the pipeline is saturated and the overhead is queueing",
        "figure": "(provider start - last message arrival) - window, per batch",
        "aggregation": "p50/p99 per rep, median over reps; pooled = all reps together",
        "baseline": "the coalesce window itself (window_ms)",
        "target": TARGET,
        "machine": machine(),
        "wall_s": None,
    }
    params["wall_s"] = round(time.monotonic() - started, 1)
    figures = {"window_ms": WINDOW_MS, "per_rate": per_rate}
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    collect_cycles_less()  # the cycle collector as ``musher run`` sets it up
    result = asyncio.run(run())
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
