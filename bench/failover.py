"""B7, room failover: two ``musher run`` daemons on one PostgreSQL; the holder of a room's
lease is SIGKILLed mid-turn, and the other daemon's takeover of the lease is timed (kill →
the lease row names the survivor). Repeated ``--kills`` times (the killed daemon restarts
between rounds, a new room each round); p50 and max against ``lease_ttl_s``, the target
being under it (the lease outlives its holder by at most the TTL, and the survivor wakes
at its expiry). Nothing asserts a timing.

    python -m bench.failover [--kills 10] [--ttl 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine, percentile, progress, rnd
from pipeline.keys import load_or_create
from tests.fakes.postgres import start_postgres
from tests.integration.daemon import DaemonProcess, room_holder

NAME = "B7_room_failover"
TURN_S = 60  # the echo answer takes this long: every kill lands mid-turn


def wait_holder(url: str, room: str, not_owner: str | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owner = room_holder(url, room)
        if owner is not None and owner != not_owner:
            return owner
        time.sleep(0.01)
    raise RuntimeError(f"no daemon took room {room} within {timeout} s")


def one_kill(url: str, daemons: list[DaemonProcess], keys: list[str], room: str) -> float:
    """Post to ``room``, kill its lease holder mid-turn; seconds until the other holds it."""
    if daemons[0].post(room, "question", id=room).status_code != 202:
        raise RuntimeError("the message was not accepted")
    owner = wait_holder(url, room, None, 15)
    victim = keys.index(owner)
    time.sleep(0.5)  # the turn is running
    killed = time.monotonic()
    daemons[victim].kill()
    wait_holder(url, room, owner, 60)
    took = time.monotonic() - killed
    daemons[victim].start()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_postgres() as server:
        url = server.new_database()
        extra = f'\n[store]\nurl = "{url}"\nlease_ttl_s = {args.ttl}\n'
        daemons = [DaemonProcess(Path(tmp, f"d{i}"), delay=TURN_S, extra=extra) for i in (0, 1)]
        try:
            for daemon in daemons:
                daemon.start()
            keys = [load_or_create(d.data_dir).public_hex for d in daemons]
            times = []
            for i in range(args.kills):
                times.append(one_kill(url, daemons, keys, f"r{i}"))
                progress(f"{NAME}: kill {i + 1}/{args.kills}: taken over in {times[-1]:.2f} s")
        finally:
            for daemon in daemons:
                daemon.kill()
    p50 = percentile(times, 50)
    emit(
        NAME,
        {"kills": args.kills, "lease_ttl_s": args.ttl, **machine()},
        {
            "failover_p50_s": rnd(p50),
            "failover_max_s": rnd(max(times)),
            "p50_over_ttl": rnd(p50 / args.ttl),
            "target": "failover < lease_ttl_s",
        },
    )


if __name__ == "__main__":
    main()
