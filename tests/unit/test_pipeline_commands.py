"""The pipeline commands as a user types them, through the registry, on a real daemon core."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.commands.registry import CommandContext
from bot.daemon import Core, build_core, ensure_default_project
from bot.db import Database
from bot.messages import Session
from bot.schema import DAEMON_SCHEMA
from config import load_settings
from pipeline import leases, nodes
from pipeline.agent_ops import AgentProgress, ClaimAgent
from pipeline.engine import Engine
from pipeline.keys import load_or_create
from pipeline.model import Archived, Backlog, Coding, Frozen, Qa, SystemOrigin
from pipeline.store import OpStore

HOUR = 3600.0
SYSTEM = SystemOrigin("test", "node")


class Clock:
    """Settable time for the store and the engine, so item ages are exact."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Chat:
    """A room (``web:lobby``) where people type commands."""

    def __init__(self, core: Core, db: Database, clock: Clock) -> None:
        self.core = core
        self.db = db
        self.clock = clock

    async def say(
        self, text: str, sender: str = "alice", admin: bool = True, session: str = "web:lobby"
    ) -> str:
        invocation = self.core.registry.match(text)
        assert invocation is not None, f"{text!r} is not a command"
        ctx = CommandContext(Session.of(session), sender, admin)
        return (await self.core.registry.run(invocation, ctx)).text

    async def items(self, project: str = "webshop") -> list[object]:
        return list(await self.core.engine.store.items(project))

    async def ops(self) -> int:
        return int((await self.db.read("SELECT COUNT(*) FROM ops"))[0][0])


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    env = {"MUSHER_LLM__PROVIDER": "none", "MUSHER_PROJECTS__ROOT": str(tmp_path / "projects")}
    settings = load_settings(None, env)
    db = await Database.open(tmp_path / "m.db", DAEMON_SCHEMA)
    clock = Clock()
    store = await OpStore.open(db, load_or_create(tmp_path), clock=clock)
    core = build_core(settings, db, store, engine=Engine(store, clock=clock))
    (tmp_path / "WebShop").mkdir()
    assert await ensure_default_project(core, tmp_path / "WebShop") == "webshop"
    await core.engine.ensure_project("other", "/srv/other", origin=SystemOrigin("test", "x"))
    yield Chat(core, db, clock)
    await core.dispatcher.aclose()
    await db.aclose()


async def test_new_replies_with_the_number_and_records_who(chat: Chat) -> None:
    assert await chat.say("new story Login page") == "Created #1 Login page (story) in webshop."
    assert await chat.say("NEW Bug Crash on save --depends #1") == (
        "Created #2 Crash on save (bug) in webshop.\nDepends on: #1."
    )
    assert await chat.say("new epic Auth") == "Created #3 Auth (epic) in webshop."
    reply = await chat.say("new spike Try OAuth --epic 3 --depends 1,2", sender="bob")
    assert reply == "Created #4 Try OAuth (spike) in webshop.\nDepends on: #1, #2."
    item = await chat.core.engine.lookup("webshop", 4)
    assert (item.epic, item.depends_on, item.origin.describe()) == (3, (1, 2), "bob (web:lobby)")


async def test_moves_and_refusals_read_like_the_table(chat: Chat) -> None:
    await chat.say("new story Login page")
    assert await chat.say("move 1 coding") == "#1 Login page: backlog → coding."
    assert await chat.say("Move #1 QA") == "#1 Login page: coding → qa."
    assert await chat.say("move 1 coding") == (
        "#1 is in qa; cannot move to coding. It can go to: merge, done, backlog."
    )
    assert await chat.say("accept 1") == "#1 is in qa; cannot accept."
    assert await chat.say("hold 1 needs a design review") == (
        "#1 Login page: qa → review-hold (needs a design review)."
    )
    assert await chat.say("release 1") == "#1 Login page: review-hold → qa."
    assert await chat.say("freeze 1") == "#1 Login page: qa → frozen."
    assert (
        await chat.say("move 1 done") == "#1 is in frozen; cannot move to done. Unfreeze it first."
    )
    assert await chat.say("unfreeze #1") == "#1 Login page: frozen → qa."
    assert await chat.say("move 1 done") == "#1 Login page: qa → done."
    assert await chat.say("accept 1") == "#1 Login page: done → archived."
    assert (await chat.core.engine.lookup("webshop", 1)).stage == Archived("completed")


async def test_block_abandon_supersede_reject_reopen(chat: Chat) -> None:
    for title in ("one", "two", "three", "four"):
        await chat.say(f"new story {title}")
    assert await chat.say("block 1") == "#1 one: backlog → blocked."
    assert await chat.say("unblock 1") == "#1 one: blocked → backlog."
    assert await chat.say("block 1 no API keys") == "#1 one: backlog → blocked (no API keys)."
    assert await chat.say("abandon 2") == "#2 two: backlog → abandoned."
    assert await chat.say("supersede 3 BY 4") == "#3 three: backlog → superseded (by #4)."
    assert await chat.say("reject 4 out of scope") == "#4 four: backlog → rejected (out of scope)."
    assert await chat.say("reopen 4") == "#4 four: rejected → backlog."
    assert await chat.say("reopen 4") == "#4 is in backlog; cannot reopen."


async def test_depends_sets_clears_and_warns(chat: Chat) -> None:
    for title in ("one", "two", "three"):
        await chat.say(f"new story {title}")
    assert await chat.say("depends 3 1 #2") == "#3 three now depends on #1, #2."
    assert await chat.say("depends 3 none") == "#3 three depends on nothing now."
    await chat.say("abandon 1")
    assert await chat.say("depends 3 1,2") == (
        "#3 three now depends on #1, #2.\n⚠️ #1 one is abandoned: it will never be done, so"
        " this dependency will never be met on its own."
    )
    assert (await chat.say("new story four --depends 1")).endswith("met on its own.")
    assert await chat.say("depends 1 3") == "#1 cannot depend on #3: that would make a cycle."


BAD_INPUT = [
    ("move 1 sideways", "Usage: move N <stage>\nValid stages: backlog, coding, qa, merge, done,"
     " archived."),
    ("move 1", "Usage: move N <stage>\nValid stages: backlog, coding, qa, merge, done, archived."),
    ("move 99 qa", "No item #99 in webshop."),
    ("move #99 QA", "No item #99 in webshop."),
    ("move one qa", None),
    ("move 1 done", "#1 is in backlog; cannot move to done. It can go to: coding."),
    ("new", None),
    ("new story", None),
    ("move 99999999999999999999 qa", "No item #99999999999999999999 in webshop."),
    ("status #9223372036854775808", "No item #9223372036854775808 in webshop."),
    ("purge 18446744073709551616", "No item #18446744073709551616 in webshop."),
    ("new story x --depends 99999999999999999999", "No item #99999999999999999999 in webshop."),
    ("depends 1 99999999999999999999", "No item #99999999999999999999 in webshop."),
    ("supersede 1 by 99999999999999999999", "No item #99999999999999999999 in webshop."),
    ("new project ../shop", "Bad project name '../shop': use a-z, 0-9 and '-' (starting with a"
     " letter or digit), at most 63 characters."),
    ("delete project nope", "No project 'nope'. Projects: other, webshop."),
    ("project set colour red", None),
    ("new story x --depends x", None),
    ("new story x --depends 99", "No item #99 in webshop."),
    ("new story x --epic 1", "#1 is a story, not an epic."),
    ("new story x --epic", None),
    ("new story x --colour red", None),
    ("depends 1", None),
    ("depends 1 x", "Usage: depends N <M…|none>\ndepends_on: give item numbers like 3 4, or none"),
    ("depends 1 1", "#1 cannot depend on itself."),
    ("depends 1 2", "#1 cannot depend on #2: that would make a cycle."),
    ("depends 99 1", "No item #99 in webshop."),
    ("supersede 1 2", None),
    ("supersede 1 by 99", "No item #99 in webshop."),
    ("supersede 1 by 1", "#1 cannot be superseded by itself."),
    ("reject 1", None),
    ("accept 1", "#1 is in backlog; cannot accept."),
    ("unfreeze 1", "#1 is in backlog; cannot unfreeze."),
    ("release 1", "#1 is in backlog; cannot release."),
    ("block", None),
    ("block 0", None),
    ("status 99", "No item #99 in webshop."),
    ("status x", None),
    ("show 99", "No item #99 in webshop."),
    ("purge 99", "No item #99 in webshop."),
    ("switch nope", "No project 'nope'. Projects: other, webshop."),
    ("switch", None),
    ("projects now", "Usage: projects"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT)
async def test_bad_input_replies_and_changes_nothing(
    chat: Chat, text: str, expected: str | None
) -> None:
    await chat.say("new story one")
    await chat.say("new story two --depends 1")
    before, ops = await chat.items(), await chat.ops()
    reply = await chat.say(text)
    if expected is None:
        assert reply.startswith("Usage: "), reply
    else:
        assert reply == expected
    assert "internal error" not in reply
    assert await chat.items() == before
    assert await chat.ops() == ops
    assert await chat.core.engine.store.room("web:lobby") is None


async def test_purge_is_for_admins_clears_layers_and_is_idempotent(chat: Chat) -> None:
    await chat.say("new story Login page")
    assert await chat.say("purge 1", sender="bob", admin=False) == (
        "Sorry, `purge` is for admins only."
    )
    assert len(await chat.items()) == 1
    assert await chat.say("purge #1") == "Purged #1 Login page from webshop. Cleared: item row."
    assert await chat.say("purge 1") == "#1 is already gone from webshop; nothing to clear."
    assert await chat.say("status 1") == "No item #1 in webshop."
    assert await chat.say("new story again") == "Created #2 again (story) in webshop."


async def test_switch_changes_only_this_rooms_project(chat: Chat) -> None:
    await chat.say("new story in the default")
    assert await chat.say("switch OTHER") == "This room now works on other (/srv/other)."
    assert await chat.say("new bug elsewhere") == "Created #1 elsewhere (bug) in other."
    assert await chat.say("status 1") != await chat.say("status 1", session="web:other")
    room = await chat.core.engine.store.room("web:lobby")
    assert room is not None and room.project == "other"
    webshop = await chat.core.engine.project("webshop")
    assert webshop.path.endswith("/WebShop")
    assert await chat.say("projects") == "\n".join(
        [
            "Projects:",
            "  other (this room) — /srv/other, generic, branch main, UTC; backlog 1",
            f"  webshop — {webshop.path}, generic, branch main, UTC; backlog 1",
            "Change this room's project with `switch <project>`.",
        ]
    )
    assert await chat.say("all_status") == (
        "other (this room): backlog 1 · coding 0 · qa 0 · merge 0 · done 0 · closed 0\n"
        "webshop: backlog 1 · coding 0 · qa 0 · merge 0 · done 0 · closed 0"
    )


async def test_status_groups_columns_with_badges_deps_and_ages(chat: Chat) -> None:
    say, clock = chat.say, chat.clock
    await say("new story Login page")  # 1
    clock.now += 2 * 24 * HOUR
    await say("new bug Crash")  # 2
    await say("new story Signup --depends 1,2")  # 3
    await say("new story Frozen in QA")  # 4
    for text in ("move 4 coding", "move 4 qa", "freeze 4", "move 2 coding", "move 2 done"):
        await say(text)
    await say("new story Blocked one")  # 5
    await say("block 5 no keys")
    for n in (6, 7, 8):
        await say(f"new story closed {n}")
    await say("abandon 6")
    await say("supersede 7 by 1")
    await say("reject 8 not needed")
    await say("new story old and accepted")  # 9
    for text in ("move 9 coding", "move 9 done", "accept 9"):
        await say(text)
    await say("new story Frozen in backlog")  # 10
    await say("freeze 10")
    clock.now += 3 * HOUR
    assert await say("STATUS") == "\n".join(
        [
            "webshop: 9 items (1 archived not shown)",
            "Backlog (3)",
            "  #1 Login page · 2d",
            "  #3 Signup (waiting on: #1) · 3h",
            "  ❄️ #10 Frozen in backlog · 3h",
            "Coding (1)",
            "  ⛔ #5 Blocked one — blocked: no keys · 3h",
            "QA (1)",
            "  ❄️ #4 Frozen in QA · 3h",
            "Done (1)",
            "  #2 Crash · 3h",
            "Closed (3)",  # finished columns list the newest first
            "  🚫 #8 closed 8 — rejected: not needed · 3h",
            "  🔀 #7 closed 7 — superseded by #1 · 3h",
            "  🗑️ #6 closed 6 · 3h",
        ]
    )
    assert (await chat.core.engine.lookup("webshop", 4)).stage == Frozen(Qa())
    assert (await chat.core.engine.lookup("webshop", 10)).stage == Frozen(Backlog())


async def test_a_long_column_is_cut_and_counted(chat: Chat) -> None:
    for n in range(1, 21):
        await chat.say(f"new story item {n}")
    board = [line.rsplit(" · ", 1)[0] for line in (await chat.say("status")).splitlines()]
    assert board[:3] == ["webshop: 20 items", "Backlog (20)", "  #1 item 1"]
    assert board[-2:] == ["  #15 item 15", "  … and 5 more (`status N` shows one)"]


async def test_an_empty_board_says_how_to_start(chat: Chat) -> None:
    assert await chat.say("status") == "webshop: 0 items. Add one with `new story <title>`."


async def test_status_n_and_show_n_detail_one_item(chat: Chat) -> None:
    await chat.say("new epic Auth")
    await chat.say("new story Login --epic 1")
    chat.clock.now += 90 * 60
    await chat.say("new story Signup --depends 2", sender="bob")
    await chat.say("move 2 coding", sender="bob")
    assert await chat.say("status 3") == "\n".join(
        [
            "#3 Signup (story) in webshop",
            "Stage: backlog; column backlog, badge active",
            "Depends on: #2 Login (coding, not done)",
            "Created 1m ago by bob (web:lobby); last change 1m ago",
            "Can move to: coding.",
        ]
    )
    await chat.say("freeze 2")
    shown = await chat.say("show #2")
    assert shown.startswith(
        "#2 Login (story) in webshop\n"
        "Stage: frozen (resumes to coding); column coding, badge frozen\n"
        "Epic: #1 Auth\n"
        "Created 1h ago by alice (web:lobby); last change 1m ago\n"
        "`unfreeze 2` takes it on.\n\nHistory:\n"
    )
    history = shown.split("History:\n")[1].splitlines()
    assert [line.split(" UTC ")[1] for line in history] == [
        "alice (web:lobby): created story 'Login' in backlog",
        "bob (web:lobby): stage backlog → coding",
        "alice (web:lobby): stage coding → frozen",
    ]
    assert history[0].startswith("  2023-11-14 22:13 UTC ")


async def test_commands_work_as_tools_with_json_arguments(chat: Chat) -> None:
    registry = chat.core.registry
    ctx = CommandContext(Session.of("web:lobby"), "alice", True, via="tool")
    reply = await registry.invoke("new", {"kind": "story", "title": "From the LLM"}, ctx)
    assert reply.text == "Created #1 From the LLM (story) in webshop."
    assert (await registry.invoke("move", {"number": 1, "stage": "coding"}, ctx)).text == (
        "#1 From the LLM: backlog → coding."
    )
    assert (await chat.core.engine.lookup("webshop", 1)).stage == Coding()
    reply = await registry.invoke("depends", {"number": 1, "depends_on": []}, ctx)
    assert reply.text == "#1 From the LLM depends on nothing now."


async def test_nodes_lists_this_daemon_trusted_and_the_leases_it_holds(chat: Chat) -> None:
    author = chat.core.engine.store.author
    await nodes.heartbeat(chat.db, author, "here", "daemon", time.time())
    await nodes.heartbeat(chat.db, "c" * 64, "there", "agent", time.time() - 30)
    await leases.acquire(chat.db, "room:web:lobby", author, 15.0, time.time())

    lines = (await chat.say("nodes")).splitlines()

    assert lines[0].startswith(f"here  {author[:12]}…  daemon  trusted  heartbeat ")
    assert lines[0].endswith("leases: room:web:lobby")
    assert lines[1].startswith(f"there  {'c' * 12}…  agent  untrusted  heartbeat 30 s ago")


async def test_node_trust_and_revoke_are_admin_ops_the_nodes_list_follows(chat: Chat) -> None:
    key = "ab" * 32
    await nodes.heartbeat(chat.db, key, "builder", "agent", time.time())
    before = await chat.ops()
    assert (await chat.say(f"node trust {key}", sender="bob", admin=False)).startswith("Sorry")
    assert "Usage: node trust <pubkey>" in await chat.say("node trust xyz")
    assert await chat.ops() == before

    assert await chat.say(f"node trust {key.upper()}") == (
        f"Trusted {key[:12]}…: its ops are accepted from now on."
    )
    assert "builder  abababababab…  agent  trusted" in await chat.say("nodes")
    assert await chat.say(f"node trust {key}") == f"{key[:12]}… is already trusted."
    own = chat.core.engine.store.author
    assert "own key" in await chat.say(f"node revoke {own}")
    assert await chat.ops() == before + 1

    assert (await chat.say(f"node revoke {key}")).startswith("Revoked")
    assert "agent  untrusted" in await chat.say("nodes")
    assert "not trusted" in await chat.say(f"node revoke {key}")
    assert await chat.ops() == before + 2


async def test_agents_lists_the_agents_build_nodes_run(chat: Chat) -> None:
    await chat.say("new story Remote work")
    store = chat.core.engine.store
    await store.append(ClaimAgent("webshop", 1, "coder", "coder", "agent:b"), SYSTEM)
    await store.append(AgentProgress("webshop", 1, {"pid": 99, "turns": 4}), SYSTEM)

    listing = await chat.say("agents --all")

    assert listing.startswith("webshop #1: coder running ")
    assert "4 turns" in listing and "pid 99" in listing and listing.endswith("— on agent:b")
    assert "Agent: coder running on agent:b for " in await chat.say("status 1")
    await nodes.heartbeat(chat.db, "b" * 64, "b", "agent", time.time())
    assert "agent  untrusted  heartbeat 0 s ago  leases: none  claims: webshop #1" in (
        await chat.say("nodes")
    )
