"""Two daemons on one PostgreSQL with the Discord transport (K2): exactly one holds the
gateway (its leader lease); SIGKILL it and the other connects and answers; a daemon whose
database connections are killed closes its gateway before its lease can pass on, and
rejoins as standby. The fake Discord counts gateway connections: never two at once. With
Matrix on a real Synapse, the daemon taking over syncs from the position the dead one
stored in the database: what was said in between is answered, once. Slack Socket Mode
likewise runs on one daemon."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.postgres import Postgres
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.slack_payloads import envelope, event
from tests.fakes.synapse import Bot, Human, Synapse
from tests.integration.daemon import DaemonProcess
from tests.integration.test_discord import discord_config, mention

MakeDaemon = Callable[..., DaemonProcess]
TTL_S = 3.0
SLACK_S = 10.0  # a loaded machine: starting a gateway session, a slow scheduler


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class Cluster:
    """A database, one login role per daemon (so one daemon's connections can be cut),
    and daemons on it, each with its own data dir."""

    def __init__(self, postgres: Postgres, make_daemon: MakeDaemon, transport: str) -> None:
        self.postgres, self.make_daemon, self.transport = postgres, make_daemon, transport
        self.database = postgres.new_database().rsplit("/", 1)[1]
        self.roles: dict[DaemonProcess, str] = {}

    def daemon(self, **kwargs: Any) -> DaemonProcess:
        role = f"node_{uuid.uuid4().hex[:8]}"
        self.admin(f"CREATE ROLE {role} LOGIN SUPERUSER")
        url = f"postgresql://{role}@127.0.0.1:{self.postgres.port}/{self.database}"
        store = f'\n[store]\nurl = "{url}"\nlease_ttl_s = {TTL_S}\n'
        daemon = self.make_daemon(extra=self.transport + store, **kwargs)
        self.roles[daemon] = role
        return daemon

    def cut(self, daemon: DaemonProcess) -> None:
        """The daemon's connections are killed and it cannot log in again."""
        role = self.roles[daemon]
        self.admin(f"ALTER ROLE {role} NOLOGIN")
        self.admin(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        )

    def heal(self, daemon: DaemonProcess) -> None:
        self.admin(f"ALTER ROLE {self.roles[daemon]} LOGIN")

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(sql.encode())


@pytest.fixture
def cluster(postgres: Postgres, make_daemon: MakeDaemon, fake_discord: FakeDiscord) -> Cluster:
    return Cluster(postgres, make_daemon, discord_config(fake_discord))


def components(daemon: DaemonProcess) -> dict[str, Any]:
    with daemon.client() as client:
        found: dict[str, Any] = client.get("/readyz").json()["components"]
        return found


def role_of(daemon: DaemonProcess, fake: FakeDiscord) -> str:
    """``leader``, ``standby`` or what ``/readyz`` says about the Discord account."""
    state = str(components(daemon).get(f"leader:discord:{fake.app_id}", "missing"))
    return state.removeprefix("ok; ").split(" ")[0]


def metric(daemon: DaemonProcess, line_start: str) -> str:
    with daemon.client() as client:
        text = client.get("/metrics").text
    return next((line for line in text.splitlines() if line.startswith(line_start)), "")


def nodes_report(daemon: DaemonProcess) -> str:
    argv = [sys.executable, "-m", "bot", "nodes", "--config", str(daemon.config)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_one_daemon_holds_the_gateway_and_another_takes_over(
    cluster: Cluster, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    first, second = cluster.daemon().start(), cluster.daemon().start()
    daemons = (first, second)
    assert wait_until(
        lambda: sorted(role_of(d, fake) for d in daemons) == ["leader", "standby"], SLACK_S
    )
    assert wait_until(lambda: fake.gateways_open == 1, SLACK_S)
    leader, standby = sorted(daemons, key=lambda d: role_of(d, fake) != "leader")
    for daemon in daemons:
        with daemon.client() as client:
            assert client.get("/readyz").status_code == 200  # standby is ready for webhooks
    assert components(standby)["transport:discord"].startswith("ok; standby")
    assert metric(leader, "musher_leases_held ") == "musher_leases_held 1"
    assert metric(standby, "musher_leases_held ") == "musher_leases_held 0"
    held = [line for line in nodes_report(standby).splitlines() if "leases:" in line]
    assert len(held) == 2  # each node, with what it holds: the leader's key holds the lease
    key = components(leader)["node"].removeprefix("ok; ").rstrip("…")
    [line] = [line for line in held if f"  {key}…  " in line]
    assert line.endswith(f"leases: leader:discord:{fake.app_id}")

    assert wait_until(lambda: fake.readies == 1, SLACK_S)
    fake.say(mention(fake, "before"))
    assert wait_until(lambda: fake.texts() == ["echo: before"], SLACK_S)
    # its turn is recorded done (the closing write follows the reply) before the kill
    turns = 'musher_turns_total{outcome="ok"} 1'
    assert wait_until(lambda: metric(leader, "musher_turns_total{") == turns, SLACK_S)

    leader.kill()  # SIGKILL: no release; the lease runs out
    assert wait_until(lambda: fake.readies == 2 and fake.gateways_open == 1, TTL_S + SLACK_S)
    assert role_of(standby, fake) == "leader"
    transfers = metric(standby, "musher_lease_transfers_total")
    assert transfers == 'musher_lease_transfers_total{kind="leader"} 1'
    fake.say(mention(fake, "after"))  # the room's lease may still be the killed node's
    assert wait_until(lambda: fake.texts() == ["echo: before", "echo: after"], TTL_S + SLACK_S)
    assert fake.most_gateways_open == 1


def test_a_daemon_cut_from_the_database_closes_its_gateway_and_rejoins(
    cluster: Cluster, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    first = cluster.daemon().start()
    assert wait_until(lambda: role_of(first, fake) == "leader" and fake.gateways_open == 1, SLACK_S)
    second = cluster.daemon().start()
    assert wait_until(lambda: role_of(second, fake) == "standby", SLACK_S)

    cluster.cut(first)  # its lease cannot be renewed: it must let go before it expires
    assert wait_until(lambda: role_of(first, fake) == "standby", TTL_S + SLACK_S)
    assert wait_until(lambda: role_of(second, fake) == "leader", TTL_S + SLACK_S)
    assert wait_until(lambda: fake.gateways_open == 1 and fake.readies == 2, SLACK_S)
    fake.say(mention(fake, "while cut"))
    assert wait_until(lambda: fake.texts() == ["echo: while cut"], SLACK_S)

    cluster.heal(first)  # it rejoins, as standby: the other holds the lease now
    assert wait_until(lambda: components(first).get("store", "ok; postgresql") == "ok; postgresql"
                      and "failing" not in str(components(first)), SLACK_S)  # fmt: skip
    time.sleep(TTL_S)  # a few renewal rounds: nothing changes hands
    assert role_of(first, fake) == "standby" and role_of(second, fake) == "leader"
    assert fake.gateways_opened == 2 and fake.most_gateways_open == 1
    assert second.terminate() == 0  # a clean stop releases the lease: the first takes over
    assert wait_until(lambda: role_of(first, fake) == "leader", TTL_S + SLACK_S)
    assert wait_until(lambda: fake.gateways_open == 1, SLACK_S)
    assert fake.most_gateways_open == 1


@pytest.mark.timeout(120)
async def test_matrix_resumes_on_another_daemon_from_the_stored_sync_position(
    postgres: Postgres, make_daemon: MakeDaemon, synapse: Synapse, alice: Human
) -> None:
    bot = Bot(synapse)
    room = await alice.room(invite=[bot.user_id])
    cluster = Cluster(postgres, make_daemon, bot.config([room]))
    first, second = cluster.daemon(window_ms=200), cluster.daemon(window_ms=200)
    await asyncio.to_thread(first.start)
    await alice.say(room, f"{bot.localpart}: before")
    assert await alice.wait_for(room, bot.user_id, 1) == ["echo: before"]

    first.kill()  # SIGKILL; then the second starts: it never synced, and its data dir is new
    await alice.say(room, f"{bot.localpart}: while nobody synced")
    await asyncio.to_thread(second.start)
    await asyncio.to_thread(wait_until, lambda: role_of_matrix(second, bot.user_id) == "leader",
                            TTL_S + SLACK_S)  # fmt: skip
    bodies = await alice.wait_for(room, bot.user_id, 2)
    assert bodies == ["echo: before", "echo: while nobody synced"]
    await alice.say(room, f"{bot.localpart}: after")
    assert (await alice.wait_for(room, bot.user_id, 3))[2:] == ["echo: after"]


def role_of_matrix(daemon: DaemonProcess, user_id: str) -> str:
    state = str(components(daemon).get(f"leader:matrix:{user_id}", "missing"))
    return state.removeprefix("ok; ").split(" ")[0]


def test_slack_socket_mode_runs_on_one_daemon_and_fails_over(
    postgres: Postgres, make_daemon: MakeDaemon
) -> None:
    with FakeSlack() as slack:
        config = (
            f'\n[transports.slack]\nenabled = true\nmode = "socket"\nbot_token = "{BOT_TOKEN}"'
            f'\napp_token = "{APP_TOKEN}"\napi_base_url = "{slack.api_url}"\n'
        )
        cluster = Cluster(postgres, make_daemon, config)
        first = cluster.daemon().start()
        assert wait_until(lambda: slack.connected == 1, SLACK_S)
        second = cluster.daemon().start()
        assert wait_until(lambda: components(second).get("leader:slack:T1:UBOT") == "ok; standby",
                          SLACK_S)  # fmt: skip
        assert slack.connected == 1 and len(slack.calls_to("apps.connections.open")) == 1

        first.kill()
        assert wait_until(lambda: len(slack.calls_to("apps.connections.open")) == 2,
                          TTL_S + SLACK_S)  # fmt: skip
        assert wait_until(lambda: slack.connected == 1, SLACK_S)
        slack.push(envelope(event("<@UBOT> after the takeover")))
        assert slack.wait(lambda: slack.posted)
        assert [p.text for p in slack.posted] == ["echo: after the takeover"]
