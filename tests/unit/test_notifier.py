"""Room notifications (E2) and audit lines (D4): who hears what, merged and rate-limited."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.audit_buffer import AuditBuffer
from bot.clock import VirtualClock
from bot.followers import Followers
from bot.journal import Journal, Kind
from bot.messages import InboundMessage
from bot.notifier import AuditFeeder, Notifier, notice_line
from pipeline.events import ItemChanged, ItemCreated, ItemPurged, PipelineEvent
from pipeline.model import AgentOrigin, Backlog, Coding, ItemKind, Qa, SystemOrigin
from pipeline.ops import SetRoom
from tests.fakes.memory_transport import MemoryTransport, Sent
from tests.unit.pipeline_env import ALICE, PROJECT, PipelineEnv, pipeline_env

LOBBY = "web:lobby"  # where alice types her commands
WATCH = "web:watch"  # a room that ran `status` once
OTHER = "web:other"  # a room working on another project


@dataclass
class Rooms:
    env: PipelineEnv
    clock: VirtualClock
    followers: Followers
    notifier: Notifier
    audit: AuditBuffer
    feeder: AuditFeeder
    web: MemoryTransport
    journal: Journal

    @property
    def sent(self) -> list[Sent]:
        assert all(s.reply.notice for s in self.web.sent)
        return self.web.sent

    def seen(self, session: str) -> list[str]:
        return self.web.texts(session)

    async def feed(self, *events: PipelineEvent) -> None:
        for event in events:
            await self.notifier.handle(event)
            await self.feeder.handle(event)


@pytest.fixture
async def rooms(tmp_path: Path) -> AsyncIterator[Rooms]:
    async with pipeline_env(tmp_path) as env:
        await env.engine.ensure_project("other", "/srv/other", origin=ALICE)
        clock = VirtualClock()
        web = MemoryTransport(name="web")
        journal = Journal(env.db)
        followers = Followers(env.engine, journal)
        followers.note(LOBBY, PROJECT)
        followers.note(WATCH, PROJECT)
        followers.note(OTHER, "other")
        notifier = Notifier(followers, web.send, clock, window_s=1.0)
        audit = AuditBuffer()
        yield Rooms(env, clock, followers, notifier, audit, AuditFeeder(followers, audit), web,
                    journal)  # fmt: skip
        await notifier.aclose()


def moved(number: int, title: str, before: object, after: object, origin: object = ALICE,
          ts: float = 1_700_000_000.0) -> ItemChanged:  # fmt: skip
    return ItemChanged(PROJECT, number, title, before, after, origin, ts)  # type: ignore[arg-type]


async def test_a_change_reaches_the_following_rooms_once_merged_after_the_window(
    rooms: Rooms,
) -> None:
    await rooms.feed(
        moved(12, "Login page", Backlog(), Coding()),
        moved(12, "Login page", Coding(), Qa()),
        moved(7, "Search", Backlog(), Coding(), origin=AgentOrigin("claude", "coder-1")),
    )
    await rooms.clock.advance(0.9)
    assert rooms.sent == []  # still collecting

    await rooms.clock.advance(0.1)
    assert rooms.seen(WATCH) == [
        "#12 Login page: backlog → coding (by alice)\n"
        "#12 Login page: coding → qa (by alice)\n"
        "#7 Search: backlog → coding (by agent coder-1)"
    ]
    # the lobby caused the first two (its replies said so); it hears only the agent's move
    assert rooms.seen(LOBBY) == ["#7 Search: backlog → coding (by agent coder-1)"]
    assert rooms.seen(OTHER) == []  # follows another project


async def test_a_storm_is_one_message_per_window_per_room(rooms: Rooms) -> None:
    bot = SystemOrigin("deps", "dependencies met")
    await rooms.feed(*(moved(n, f"Item {n}", Backlog(), Coding(), bot) for n in range(1, 51)))
    await rooms.clock.advance(1.0)

    [message] = rooms.seen(WATCH)
    lines = message.splitlines()
    assert len(lines) == 20
    assert lines[0] == "#1 Item 1: backlog → coding (by deps: dependencies met)"
    assert lines[-1] == "… and 31 more changes: see `status`."

    await rooms.feed(moved(60, "Late", Backlog(), Coding(), bot))
    await rooms.clock.advance(0.5)
    assert len(rooms.seen(WATCH)) == 1  # the next message waits for its own window
    await rooms.clock.advance(0.5)
    assert rooms.seen(WATCH)[1] == "#60 Late: backlog → coding (by deps: dependencies met)"


async def test_created_purged_and_dependency_only_changes(rooms: Rooms) -> None:
    created = ItemCreated(PROJECT, 3, "Cart", ItemKind.BUG, Backlog(), (), ALICE, 1.0)
    deps_only = moved(3, "Cart", Backlog(), Backlog())
    purged = ItemPurged(PROJECT, 3, "Cart", ("item row",), ALICE, 2.0)
    assert notice_line(deps_only) is None

    await rooms.feed(created, deps_only, purged)
    await rooms.clock.advance(1.0)
    assert rooms.seen(WATCH) == ["#3 Cart: new bug (by alice)\n#3 Cart: purged (by alice)"]


async def test_audit_lines_go_to_every_following_room_once(rooms: Rooms) -> None:
    timer = SystemOrigin("timers", "t3fa21c")
    await rooms.feed(
        moved(12, "Login page", Backlog(), Coding(), ts=1_700_000_000.4),
        moved(12, "Login page", Coding(), Coding()),  # dependencies only: no line
        moved(12, "Login page", Coding(), Qa(), origin=timer, ts=1_700_000_060),
    )
    expected = [
        "audit ts=1700000000 project=demo item=12 from=backlog to=coding by=alice",
        "audit ts=1700000060 project=demo item=12 from=coding to=qa by=timers",
    ]
    assert rooms.audit.drain(LOBBY) == expected  # the causing room too: its LLM never saw it
    assert rooms.audit.drain(WATCH) == expected
    assert rooms.audit.drain(WATCH) == []  # given to one turn only
    assert rooms.audit.drain(OTHER) == []


async def test_announce_and_post_merge_with_the_notifications(rooms: Rooms) -> None:
    rooms.notifier.announce(PROJECT, "⚠️ #4 waits on #5, which is abandoned.")
    rooms.notifier.post(OTHER, "⏰ Timer t1 did nothing.")
    await rooms.feed(moved(4, "Four", Backlog(), Coding(), origin=AgentOrigin("a", "b")))
    await rooms.clock.advance(1.0)
    assert rooms.seen(LOBBY) == [
        "⚠️ #4 waits on #5, which is abandoned.\n#4 Four: backlog → coding (by agent b)"
    ]
    assert rooms.seen(OTHER) == ["⏰ Timer t1 did nothing."]


async def test_switching_changes_what_a_room_follows(rooms: Rooms) -> None:
    rooms.followers.note(WATCH, "other")
    assert rooms.followers.following(PROJECT) == [LOBBY]
    assert rooms.followers.following("other") == [OTHER, WATCH]
    await rooms.feed(moved(1, "One", Backlog(), Coding(), origin=AgentOrigin("a", "b")))
    await rooms.clock.advance(1.0)
    assert rooms.seen(WATCH) == []


async def test_followers_are_rebuilt_from_switches_and_the_journal(rooms: Rooms) -> None:
    env = rooms.env
    await env.store.append(SetRoom("slack:C1", project="other"), ALICE)
    await env.store.append(SetRoom("slack:C2", ambient=True), ALICE)  # not a pipeline use
    for n, (room, text) in enumerate([("mx", "status"), ("mx", "hello"), ("wa", "hi")]):
        message = InboundMessage("matrix", room, "bob", f"e{n}", 1.0, text, mentioned=True)
        await rooms.journal.record(message, Kind.COMMAND if text == "status" else Kind.TEXT, text)

    followers = Followers(env.engine, rooms.journal)  # as after a restart
    assert await followers.load() == 2
    assert followers.following(PROJECT) == ["matrix:mx"]  # ran a command; default project
    assert followers.following("other") == ["slack:C1"]  # switched
    assert followers.project_of("slack:C2") is None
    assert await followers.load() == 2  # idempotent


async def test_nothing_is_sent_after_aclose(rooms: Rooms) -> None:
    await rooms.feed(moved(1, "One", Backlog(), Coding(), origin=AgentOrigin("a", "b")))
    await rooms.notifier.aclose()
    await rooms.clock.advance(5.0)
    rooms.notifier.post(WATCH, "late")
    await rooms.clock.advance(5.0)
    assert rooms.sent == []


async def test_another_daemons_change_is_not_notified_here_but_reaches_the_audit(
    rooms: Rooms,
) -> None:
    remote = dataclasses.replace(moved(5, "Elsewhere", Backlog(), Coding()), remote=True)
    await rooms.feed(remote)  # the daemon that made it tells the rooms (K2)
    await rooms.clock.advance(1.0)
    assert rooms.sent == []
    assert len(rooms.audit.drain(WATCH)) == 1  # the room's next turn here still learns of it


async def test_shared_followers_learn_rooms_that_ran_commands_on_other_daemons(
    rooms: Rooms,
) -> None:
    far = "matrix:!far"
    message = InboundMessage("matrix", "!far", "bob", "e1", 1.0, "status", mentioned=True)
    await rooms.journal.record(message, Kind.COMMAND, "status")  # journalled by another daemon
    await rooms.feed(moved(5, "Login", Backlog(), Coding()))
    assert far not in rooms.followers.following(PROJECT)  # one daemon: note() saw everything

    rooms.followers.shared = True
    await rooms.feed(moved(5, "Login", Coding(), Qa()))
    assert far in rooms.followers.following(PROJECT)
