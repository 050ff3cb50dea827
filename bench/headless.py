"""B8 headless build nodes (issue 15): claim latency and throughput of ``musher agent``.

Starts its own PostgreSQL and a ``git daemon`` serving the project's remote (the same
harness as the tests, ``tests/integration/headless_env.py``), then in one run:

* ``claim``: ``REPS`` times, one item moved to Coding while one build node idles; the
  latency is that move → the fake agent reading its prompt (its own timestamp): p50/p99.
  Nodes wake on LISTEN ``musher_ops``; their 1 s poll is the fallback.
* ``throughput``: ``ITEMS`` items moved to Coding at once, until all are in Merge, with one
  node and then two (one agent slot each): items/s of each and the ratio (baseline: the one
  node, same run).

Asserts nothing. Run alone: ``python -m bench.headless`` (``--reps``/``--items``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine, percentile, progress, quiet_logs, rnd
from tests.fakes.postgres import start_postgres
from tests.integration.headless_env import Cluster, all_in, cluster

NAME = "B8_headless"
REPS = 10
ITEMS = 8


async def claim_latency(env: Cluster, reps: int) -> list[float]:
    await env.trust("a")
    env.start("a")
    await env.wait(lambda: _logged(env, "a", "build node a"))
    latencies = []
    for rep in range(reps):
        start = time.time()
        number = await env.coding(f"latency {rep}")
        await env.wait(lambda n=number: all_in(env, [n], "Merge"))  # type: ignore[misc]
        [call] = env.calls_of(number)
        latencies.append(call["ts"] - start)
    env.stop("a")
    return latencies


async def throughput(env: Cluster, nodes: list[str], items: int, tag: str) -> float:
    for name in nodes:
        await env.trust(name)
        env.start(name)
    for name in nodes:
        await env.wait(lambda n=name: _logged(env, n, f"build node {n}"))  # type: ignore[misc]
    start = time.monotonic()
    numbers = [await env.coding(f"{tag} {i}") for i in range(items)]
    await env.wait(lambda: all_in(env, numbers, "Merge"))
    took = time.monotonic() - start
    for name in nodes:
        env.stop(name)
    return items / took


def _fresh(tmp: str, name: str) -> Path:
    path = Path(tmp) / name
    path.mkdir()
    return path


async def _logged(env: Cluster, name: str, text: str) -> bool:
    return text in env.log(name)


async def run(reps: int, items: int) -> None:
    with (
        start_postgres() as server,
        tempfile.TemporaryDirectory(prefix="musher-bench-headless-") as tmp,
    ):
        progress(f"headless: claim latency, {reps} items one by one")
        async with cluster(_fresh(tmp, "claim"), server) as env:
            latencies = await claim_latency(env, reps)
        progress(f"headless: {items} items through one node")
        async with cluster(_fresh(tmp, "one"), server) as env:
            one = await throughput(env, ["a"], items, "one")
        progress(f"headless: {items} items through two nodes")
        async with cluster(_fresh(tmp, "two"), server) as env:
            two = await throughput(env, ["a", "b"], items, "two")
    emit(
        NAME,
        {"reps": reps, "items": items, "poll_s": 1.0, **machine()},
        {
            "claim_p50_s": rnd(percentile(latencies, 50), 3),
            "claim_p99_s": rnd(percentile(latencies, 99), 3),
            "items_per_s_one_node": rnd(one, 3),
            "items_per_s_two_nodes": rnd(two, 3),
            "two_over_one": rnd(two / one, 2),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--items", type=int, default=ITEMS)
    args = parser.parse_args()
    quiet_logs()
    asyncio.run(run(args.reps, args.items))


if __name__ == "__main__":
    main()
