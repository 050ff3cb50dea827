"""B7 failover: how long a transport account is without its connection after its leader
daemon is SIGKILLed.

Starts its own PostgreSQL (``tests/fakes/postgres.py``) and fake Discord
(``tests/fakes/discord_api.py``), and two ``python -m bot run`` daemons on one database with
``[transports.discord]`` and ``[store] lease_ttl_s = TTL_S``: one holds the gateway (its
leader lease), the other waits. Then ``KILLS`` times: SIGKILL the daemon holding the gateway
(the one connected at the fake), time until the other's gateway IDENTIFY reaches the fake,
start the killed one again (it joins as standby) and wait for it to be ready.

The lease cannot pass on before it expires, up to ``lease_ttl_s`` after its last renewal
(renewals come every third of the TTL), and the standby tries as soon as it expires, then
connects: expect between two thirds of the TTL and the TTL, plus a connect. Figures:
failover p50/p99/max in seconds, and the p50 as a ratio of the TTL (the baseline: BENCH.md
targets failover < ``lease_ttl_s``). Every process is stopped at the end. Asserts nothing.

Run alone: ``python -m bench.leader_failover`` (``--kills``, ``--ttl`` to resize).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit, machine, percentile, progress, rnd
from bench.discord_gateway import CONFIG as DISCORD_CONFIG
from bench.intake import Server, start_daemon
from tests.fakes.discord_api import TOKEN, FakeDiscord
from tests.fakes.postgres import start_postgres

NAME = "B7_leader_failover"
KILLS = 10
TTL_S = 3.0
WAIT_S = 60.0

CONFIG = (
    DISCORD_CONFIG
    + """
[store]
url = "{url}"
lease_ttl_s = {ttl}
"""
)


def until(check: Any, what: str, timeout: float = WAIT_S) -> None:
    if not FakeDiscord.wait(check, timeout):
        raise RuntimeError(f"timed out waiting for {what}")


def role(server: Server, fake: FakeDiscord) -> str:
    """``leader``, ``standby`` or ``down``, as the daemon's ``/readyz`` says."""
    try:
        components = httpx.get(f"{server.url}/readyz", timeout=5).json()["components"]
    except (httpx.HTTPError, ValueError, KeyError):
        return "down"
    state = str(components.get(f"leader:discord:{fake.app_id}", "down"))
    return state.removeprefix("ok; ").split(" ")[0]


def identified(fake: FakeDiscord) -> int:
    return fake.gateway_ops.count(2)


def run(kills: int, ttl: float) -> dict[str, Any]:
    started = time.monotonic()
    samples: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="musher-b7f-") as tmp,
        start_postgres() as server,
        FakeDiscord() as fake,
    ):
        config = CONFIG.format(
            token=TOKEN,
            api=fake.api_url,
            gateway=fake.gateway_url,
            guild=fake.guild_id,
            url=server.new_database(),
            ttl=ttl,
        )
        dirs = [Path(tmp) / "a", Path(tmp) / "b"]
        for path in dirs:
            path.mkdir()
        daemons = [start_daemon(path, config) for path in dirs]
        try:
            until(lambda: identified(fake) == 1, "the first leader")
            for kill in range(kills):
                until(
                    lambda: sorted(role(d, fake) for d in daemons) == ["leader", "standby"],
                    "one leader and one standby",
                )
                leader = next(i for i, d in enumerate(daemons) if role(d, fake) == "leader")
                before = identified(fake)
                daemons[leader].proc.kill()
                killed_at = time.monotonic()
                daemons[leader].proc.wait(10)
                until(lambda: identified(fake) > before, "the takeover")  # noqa: B023
                samples.append(time.monotonic() - killed_at)
                progress(f"failover {kill + 1}/{kills}: {samples[-1]:.2f} s")
                (dirs[leader] / "data" / "daemon.json").unlink()  # the killed one's, stale
                daemons[leader] = start_daemon(dirs[leader], config)
            most_open = fake.most_gateways_open
        finally:
            for daemon in daemons:
                daemon.stop()
    p50 = percentile(samples, 50)
    figures = {
        "failover_p50_s": rnd(p50, 2),
        "failover_p99_s": rnd(percentile(samples, 99), 2),
        "failover_max_s": rnd(max(samples), 2),
        "failover_s": [rnd(s, 2) for s in samples],
        "ratio_p50_ttl": rnd(p50 / ttl),
        "most_gateways_open_at_once": most_open,
    }
    params = {
        "what": "SIGKILL of the daemon holding the Discord gateway → the other's IDENTIFY",
        "daemons": "2 × python -m bot run on one PostgreSQL, fake Discord, echo provider",
        "kills": kills,
        "lease_ttl_s": ttl,
        "target": "failover p50 < lease_ttl_s (ratio_p50_ttl < 1)",
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.leader_failover")
    parser.add_argument("--kills", type=int, default=KILLS, help="SIGKILLs (p50 over them)")
    parser.add_argument("--ttl", type=float, default=TTL_S, help="[store] lease_ttl_s")
    args = parser.parse_args()
    result = run(args.kills, args.ttl)
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
