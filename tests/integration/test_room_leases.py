"""Two daemons on one PostgreSQL (K2, D2 across the cluster): a room's turns run only on the
holder of its lease, one at a time; what the other daemon receives is answered by the
holder; when the holder is SIGKILLed mid-turn the other takes the room over within the
TTL, tells it once, and answers everything exactly once."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable

import psycopg

from pipeline.keys import load_or_create
from tests.fakes.postgres import Postgres
from tests.integration.daemon import DaemonProcess, room_holder

MakeDaemon = Callable[..., DaemonProcess]
TTL = 3
INTERRUPTED = "⚠️ musher restarted while answering; answering again."


def pair(make_daemon: MakeDaemon, url: str, delay: float) -> tuple[DaemonProcess, ...]:
    extra = f'\n[store]\nurl = "{url}"\nlease_ttl_s = {TTL}\n'
    return tuple(make_daemon(extra=extra, delay=delay, window_ms=200).start() for _ in range(2))


def answered(daemon: DaemonProcess, room: str) -> Counter[str]:
    """How many times each message text was answered (the echo provider joins a batch)."""
    counts: Counter[str] = Counter()
    for text in daemon.bot_texts(room):
        if text.startswith("echo: "):
            counts.update(text.removeprefix("echo: ").split(" | "))
    return counts


def wait_answered(daemon: DaemonProcess, room: str, texts: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while set(answered(daemon, room)) < set(texts) and time.monotonic() < deadline:
        time.sleep(0.1)


def turns(url: str) -> list[tuple[float, float | None, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT started_at, finished_at, outcome FROM turns ORDER BY id")
        return [(float(a), None if b is None else float(b), c) for a, b, c in rows.fetchall()]


def test_a_burst_posted_to_both_daemons_runs_one_turn_at_a_time_and_answers_each_once(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    url = postgres.new_database()
    daemons = pair(make_daemon, url, delay=0.6)
    texts = [f"m{i}" for i in range(10)]
    for i, text in enumerate(texts):
        assert daemons[i % 2].post("lobby", text, id=text).status_code == 202
        time.sleep(0.25)
    wait_answered(daemons[0], "lobby", texts, timeout=40)

    for daemon in daemons:  # both show the same room, everything answered exactly once
        assert answered(daemon, "lobby") == Counter(texts)
    ran = turns(url)
    assert len(ran) >= 2 and all(outcome == "ok" for _, _, outcome in ran)
    for (_, end, _), (start, _, _) in itertools.pairwise(ran):
        assert end is not None and end <= start  # never two turns of the room at once
    with daemons[0].client() as client:
        metrics = client.get("/metrics").text
    assert "musher_leases_held" in metrics and "musher_lease_transfers_total" in metrics
    for daemon in daemons:
        assert daemon.terminate() == 0


def holder_and_other(url: str, daemons: tuple[DaemonProcess, ...], text: str) -> tuple[int, int]:
    """Post ``text`` to the first daemon and wait for its turn: which daemon holds the
    room's lease, and which does not."""
    keys = [load_or_create(d.data_dir).public_hex for d in daemons]
    assert daemons[0].post("lobby", text, id=text).status_code == 202
    held = keys.index(wait_for_turn(url, "lobby"))
    return held, 1 - held


def wait_for_turn(url: str, room: str) -> str:
    """Wait until a turn of ``room`` runs; the key of the node holding its lease."""
    deadline = time.monotonic() + 15
    while (owner := room_holder(url, room)) is None or not turns(url):
        assert time.monotonic() < deadline, "no turn started"
        time.sleep(0.05)
    return owner


def test_stop_said_to_the_other_daemon_stops_the_turn_on_the_holder(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    url = postgres.new_database()
    daemons = pair(make_daemon, url, delay=4)
    other = daemons[holder_and_other(url, daemons, "q")[1]]
    assert other.post("lobby", "stop", id="s").status_code == 202
    assert other.wait_for("lobby", 1) == ["Stopped."]
    time.sleep(5)  # longer than the turn would have taken
    assert other.bot_texts("lobby") == ["Stopped."]
    with psycopg.connect(url) as conn:
        [(state,)] = conn.execute("SELECT state FROM inbound WHERE event_id = 'q'").fetchall()
    assert state == "stopped"


def test_the_holder_killed_mid_turn_is_replaced_within_the_ttl_and_nothing_is_lost(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    url = postgres.new_database()
    daemons = pair(make_daemon, url, delay=8)
    keys = [load_or_create(d.data_dir).public_hex for d in daemons]
    victim, survivor = holder_and_other(url, daemons, "first")
    assert daemons[survivor].post("lobby", "second", id="second").status_code == 202
    time.sleep(0.5)  # the holder collected it for its follow-up
    daemons[victim].kill()
    killed_at = time.monotonic()

    deadline = killed_at + TTL + 2  # the lease expires within the TTL; the other wakes then
    while room_holder(url, "lobby") != keys[survivor]:
        assert time.monotonic() < deadline, "the room was not taken over"
        time.sleep(0.05)
    wait_answered(daemons[survivor], "lobby", ["first", "second"], timeout=30)

    assert answered(daemons[survivor], "lobby") == Counter(["first", "second"])
    assert daemons[survivor].bot_texts("lobby").count(INTERRUPTED) == 1
    assert daemons[survivor].terminate() == 0


def test_daemons_whose_connections_were_killed_rejoin_and_answer_each_message_once(
    make_daemon: MakeDaemon, postgres: Postgres
) -> None:
    url = postgres.new_database()
    daemons = pair(make_daemon, url, delay=0.3)
    assert daemons[0].post("lobby", "before", id="before").status_code == 202
    wait_answered(daemons[0], "lobby", ["before"], timeout=20)
    postgres.terminate_others()  # every daemon connection, LISTEN ones included, is cut
    texts = ["after1", "after2", "after3", "after4"]
    for i, text in enumerate(texts):
        response = daemons[(i + 1) % 2].post("lobby", text, id=text)
        if response.status_code == 503:  # the store said so before the 2xx: send again
            time.sleep(0.5)
            response = daemons[(i + 1) % 2].post("lobby", text, id=text)
        assert response.status_code == 202
        time.sleep(0.3)
    wait_answered(daemons[1], "lobby", ["before", *texts], timeout=30)
    assert answered(daemons[1], "lobby") == Counter(["before", *texts])
