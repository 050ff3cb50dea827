"""B7, web intake across daemons: the same ``POST /api/v1/rooms/{room}/messages`` load
against one daemon on SQLite, one daemon on PostgreSQL, and two daemons on one PostgreSQL
(both getting messages for every room, so nearly every message is handed to the other
daemon; and "sticky": each its own rooms, as a load balancer hashing on the room would).

Each setup gets ``CONCURRENCY`` (32) closed-loop keep-alive connections in all (with two
daemons, half to each, from two load generator processes running at once) for
``DURATION_S`` seconds after a warm-up, ``REPS`` times, the setups taking turns; the figure
is the median requests/s answered 2xx, with its p50/p99, and the ratios against one daemon
on SQLite and one on PostgreSQL measured in the same run. PostgreSQL is started by the bench
(``tests/fakes/postgres.py``, ``fsync`` on). The load generator and the daemons share the
machine's cores, so the two-daemon figure says what a second daemon costs or gains on one
machine, not what a second machine would add; ``*_cpu_busy`` says how much of the machine's
cores (0–1, from ``/proc/stat``, everything running) were busy under each setup's load,
so a figure bounded by the machine shows as such. Asserts nothing.

    python -m bench.cluster_intake [--reps 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import emit, machine, median, progress, rnd
from bench.intake import Server, drain, run_loadgen, start_daemon
from tests.fakes.postgres import Postgres, start_postgres

NAME = "B7_cluster_intake"
CONCURRENCY = 32
REPS = 3
DURATION_S = 3.0
SETUPS = ("sqlite", "pg_one", "pg_two", "pg_two_sticky")


def _store(url: str) -> str:
    return f'\n[store]\nurl = "{url}"\n'


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot; (0, 0) where there is no /proc/stat."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _measure(servers: list[Server], duration: float, sticky: bool) -> dict[str, float]:
    """Load every server at once (``CONCURRENCY`` split between them); summed rps, and the
    worst p50/p99 of the parts. Each server gets the same rooms, or (``sticky``, as a load
    balancer hashing on the room would) rooms of its own."""
    share = CONCURRENCY // len(servers)

    def one(i: int) -> dict[str, Any]:
        rooms = ("--rooms", f"d{i}-room") if sticky else ()
        return run_loadgen("bench.intake", servers[i].url, share, duration=duration, extra=rooms)

    busy0, total0 = _cpu_times()
    with ThreadPoolExecutor(len(servers)) as pool:
        parts = list(pool.map(one, range(len(servers))))
    busy1, total1 = _cpu_times()
    for server in servers:
        drain(server.url)
    return {
        "rps": sum(p["rps"] for p in parts),
        "p50_ms": max(p["p50_ms"] for p in parts),
        "p99_ms": max(p["p99_ms"] for p in parts),
        "non_2xx": sum(n for p in parts for s, n in p["statuses"].items() if s[0] != "2"),
        "cpu_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0,
    }


def _one_rep(tmp: Path, pg: Postgres, duration: float, rep: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    order = SETUPS if rep % 2 == 0 else tuple(reversed(SETUPS))
    for setup in order:
        progress(f"{NAME}: rep {rep + 1} {setup}")
        where = tmp / f"{setup}-{rep}"
        count = 2 if setup.startswith("pg_two") else 1
        store = "" if setup == "sqlite" else _store(pg.new_database())
        servers: list[Server] = []
        try:
            for i in range(count):
                (where / f"d{i}").mkdir(parents=True)
                servers.append(start_daemon(where / f"d{i}", store))
            results[setup] = _measure(servers, duration, setup.endswith("sticky"))
        finally:
            for server in servers:
                server.stop()
    return results


def run(reps: int, duration: float) -> dict[str, Any]:
    started = time.monotonic()
    runs: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="musher-b7-") as tmp, start_postgres(fsync=True) as pg:
        for rep in range(reps):
            runs.append(_one_rep(Path(tmp), pg, duration, rep))
    figures: dict[str, Any] = {}
    for setup in SETUPS:
        figures[f"{setup}_rps"] = rnd(median(r[setup]["rps"] for r in runs), 1)
        figures[f"{setup}_p50_ms"] = rnd(median(r[setup]["p50_ms"] for r in runs), 1)
        figures[f"{setup}_p99_ms"] = rnd(median(r[setup]["p99_ms"] for r in runs), 1)
        figures[f"{setup}_non_2xx"] = sum(int(r[setup]["non_2xx"]) for r in runs)
        figures[f"{setup}_cpu_busy"] = rnd(median(r[setup]["cpu_busy"] for r in runs))
    sqlite, one, two, sticky = (median(r[s]["rps"] for r in runs) for s in SETUPS)
    figures["pg_one_over_sqlite"] = rnd(one / sqlite if sqlite else 0.0)
    figures["pg_two_over_pg_one"] = rnd(two / one if one else 0.0)
    figures["pg_two_sticky_over_pg_one"] = rnd(sticky / one if one else 0.0)
    params = {
        "endpoint": "POST /api/v1/rooms/{room}/messages (echo provider, 50 ms window)",
        "concurrency": CONCURRENCY,
        "duration_s": duration,
        "reps": reps,
        "setups": "one daemon on SQLite; one on PostgreSQL; two on one PostgreSQL, both"
        " getting every room (pg_two) or each its own rooms (pg_two_sticky)",
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return {"params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_intake")
    parser.add_argument("--reps", type=int, default=REPS)
    parser.add_argument("--duration", type=float, default=DURATION_S)
    args = parser.parse_args()
    result = run(args.reps, args.duration)
    emit(NAME, result["params"], result["figures"])


if __name__ == "__main__":
    main()
