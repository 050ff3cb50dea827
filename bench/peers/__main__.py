"""``python -m bench.peers`` (``make bench-peers``): musher beside nanobot-ai and hermes-agent.

Installs the peers (pinned, into ``.cache/peers/``), starts one fake OpenAI-compatible LLM
(:mod:`bench.peers.llm`, 2 s per call), then for each system in turn: starts it in a fresh
temporary directory, warms it up with one answered message, plays W1, W2 and W3
(:mod:`bench.peers.workloads`) ``--reps`` times, and stops it. Prints one JSON line per run
and one per system and workload with the medians over repetitions (``"rep": "median"``) on
stdout, and the table of medians (Markdown, for the README) on stderr. A system that fails
gets an ``error`` line, the others still run, and the exit status is 1; a musher variant whose
settings this build refuses gets a ``skipped`` line instead (it does not fail the run).
Nothing asserts a timing.

    python -m bench.peers --systems musher,nanobot --workloads 1,2 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import machine, progress
from bench.peers.analysis import median_figures, table
from bench.peers.hermes import Hermes
from bench.peers.llm import LATENCY_S, FakeLlm
from bench.peers.nanobot import Nanobot
from bench.peers.systems import MUSHER_VARIANTS, NOT_BUILT, Musher, OnMessage, System
from bench.peers.workloads import WORKLOADS, Player

BENCH = "B9_peers"
SYSTEMS = [*MUSHER_VARIANTS, "nanobot", "hermes"]
START_LIMIT_S = 180.0


def make_system(name: str, on_message: OnMessage) -> System:
    if name in MUSHER_VARIANTS:
        return Musher(on_message, name)
    if name == "nanobot":
        return Nanobot(on_message)
    if name == "hermes":
        return Hermes(on_message)
    raise SystemExit(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")


def emit(
    params: dict[str, Any], figures: dict[str, Any], error: str | None = None, skipped: bool = False
) -> None:
    line: dict[str, Any] = {"bench": BENCH, "params": params, "figures": figures}
    if error is not None:
        line["skipped" if skipped else "error"] = error
    print(json.dumps(line), flush=True)


async def measure(
    name: str, llm: FakeLlm, workloads: list[int], reps: int, keep: bool
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every run of one system; the median rows for the table."""
    player = Player(llm)
    system = make_system(name, player.on_message)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-peers-{name}-"))
    base = {"system": name, "version": system.version, "latency_s": llm.latency_s}
    rows: list[tuple[str, str, dict[str, Any]]] = []
    try:
        progress(f"{name} {system.version}: starting in {workdir}")
        await asyncio.wait_for(system.start(llm.base_url, workdir), START_LIMIT_S)
        await player.warm_up(system)
        runs: dict[int, list[dict[str, Any]]] = {w: [] for w in workloads}
        for rep in range(1, reps + 1):
            for workload in workloads:
                figures = await player.play(system, workload, rep)
                progress(f"{name} W{workload} rep {rep}: {figures}")
                emit(base | {"workload": f"W{workload}", "rep": rep}, figures)
                runs[workload].append(figures)
        for workload in workloads:
            medians = median_figures(runs[workload])
            emit(base | {"workload": f"W{workload}", "rep": "median", "reps": reps}, medians)
            rows.append((f"{name} {system.version}", WORKLOADS[workload], medians))
    except Exception as exc:  # one system failing must not hide the others' figures
        skipped = str(exc).startswith(NOT_BUILT)
        reason = (str(exc) if skipped else f"{type(exc).__name__}: {exc}")[:600]
        progress(f"{name}: {reason}")
        emit(base, {}, reason, skipped)
        figures = {"error": reason.splitlines()[0], "skipped": skipped}
        rows.append((f"{name} {system.version}", "all", figures))
    finally:
        await system.stop()
        if keep:
            progress(f"{name}: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


async def main_async(args: argparse.Namespace) -> int:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    workloads = [int(w) for w in args.workloads.split(",")]
    rows: list[tuple[str, str, dict[str, Any]]] = []
    async with FakeLlm(latency_s=args.latency) as llm:
        for name in systems:
            rows += await measure(name, llm, workloads, args.reps, args.keep)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    print(
        f"\n{date}, {args.reps} repetitions, medians, LLM latency {args.latency:g} s, "
        f"{machine()}\n",
        file=sys.stderr,
    )
    print(table(rows), file=sys.stderr, flush=True)
    failed = any("error" in figures and not figures["skipped"] for _, _, figures in rows)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default=",".join(str(w) for w in WORKLOADS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--latency", type=float, default=LATENCY_S)
    parser.add_argument("--keep", action="store_true", help="keep each system's work directory")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
