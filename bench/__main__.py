"""``python -m bench`` (``make bench``): run every benchmark, one JSON line each on stdout.

Each benchmark runs alone in its own interpreter (``python -m bench.<module>``), so one
cannot leave threads, memory or a busy event loop behind for the next; its stdout (the JSON
line) is passed through, its stderr (progress) goes straight to ours. A benchmark that fails
gets a line with an ``error`` instead and the others still run; the exit status is then 1.
Nothing asserts a timing: targets are printed next to the figures for context. B2 is five
modules: ``intake`` (the web API), ``slack_intake`` (a signed Slack event, plus a short
retry storm), ``whatsapp_intake`` (a signed Meta webhook), ``twilio_intake`` (a signed
Twilio form post) and ``discord_intake`` (a signed Discord interaction); each takes
``--sweep``/``--reps``/``--duration`` for a full-size run and reports the server's CPU
time per request beside requests/s. ``discord_gateway`` times a gateway message to its
reply against a bare discord.py bot. ``pg_driver`` (part of B7) starts
its own PostgreSQL: psycopg against asyncpg, and the op log on PostgreSQL against SQLite;
``failover`` (also B7) SIGKILLs a room's lease holder mid-turn and times the takeover;
``leader_failover`` (B7 too) SIGKILLs the daemon holding the Discord gateway, ten times;
``cluster_intake`` (B7) puts one web POST load on one daemon on SQLite, one on PostgreSQL
and two on one PostgreSQL.
``steer`` is the peer workload W2 (messages during a running turn) in busy modes ``steer``
and ``collect``. ``merge`` and ``agents`` (B8) time a squash merge and an agent's spawn and
gates against the same steps run directly; ``headless`` (B8) times a build node's claim
latency and the throughput of one node against two.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import progress

BENCHES = [
    ("B1", "dispatch", "dispatch_overhead"),
    ("B2", "intake", "http_intake"),
    ("B2", "slack_intake", "http_intake_slack"),
    ("B2", "whatsapp_intake", "http_intake_whatsapp"),
    ("B2", "twilio_intake", "http_intake_twilio"),
    ("B2", "discord_intake", "http_intake_discord"),
    ("B2", "discord_gateway", "discord_gateway_reply"),
    ("B3", "commands", "B3_commands"),
    ("B4", "oplog", "B4_oplog"),
    ("B5", "spawn", "B5_turn_spawn"),
    ("B6", "sessions", "session_scale"),
    ("B7", "pg_driver", "pg_driver"),
    ("B7", "failover", "B7_room_failover"),
    ("B7", "leader_failover", "B7_leader_failover"),
    ("B7", "cluster_intake", "B7_cluster_intake"),
    ("B8", "merge", "B8_merge"),
    ("W2", "steer", "W2_steer"),
    ("B8", "agents", "B8_agents"),
    ("B8", "headless", "B8_headless"),
]
TIMEOUT_S = 600


def main() -> int:
    failed = 0
    started = time.monotonic()
    for label, module, name in BENCHES:
        progress(f"{label}: python -m bench.{module}")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", f"bench.{module}"],
                stdout=subprocess.PIPE,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"exit status {proc.returncode}, {len(lines)} JSON lines")
        except (subprocess.TimeoutExpired, RuntimeError) as exc:
            failed += 1
            error = {"bench": name, "params": {}, "figures": {}, "error": str(exc)}
            print(json.dumps(error), flush=True)
            continue
        for line in lines:
            print(line, flush=True)
    progress(f"all benchmarks done in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
