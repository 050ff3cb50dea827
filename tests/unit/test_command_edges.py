"""Commands at their edges: hostile titles, repeated options, what "waiting on" lists, timers
refused at creation, and the verbs DESIGN.md names that are not built yet (C2, R12)."""

from __future__ import annotations

import pytest

from bot.commands import unbuilt
from bot.commands.registry import CommandContext, Registry
from bot.commands.unbuilt import UNBUILT
from bot.messages import Session
from pipeline.model import Backlog
from tests.unit import test_pipeline_commands
from tests.unit.test_pipeline_commands import Chat

chat = test_pipeline_commands.chat  # the fixture: a room on a real daemon core

NOT_YET = "is not available yet in this version of musher. Try `help`."


@pytest.mark.parametrize(
    "title",
    ["Log\x00in", "Log\u202ein", "\u2066Log\u2069in", "Log\u200fin", "Lo\x1b[31mg\x07in"],
)
async def test_control_and_bidi_characters_never_reach_a_stored_title(
    chat: Chat, title: str
) -> None:
    reply = await chat.say(f"new story {title}")

    assert reply.startswith("Created #1 ")
    [item] = await chat.core.engine.store.items("webshop")
    assert all(c.isprintable() and c not in "\u202e\u2066\u2069\u200f" for c in item.title)
    assert item.title.replace("[31m", "") == "Login"


async def test_a_title_that_is_only_control_characters_is_refused(chat: Chat) -> None:
    assert (await chat.say("new story \x00\u202e")).startswith("Usage: new story|bug")
    assert await chat.items() == []


async def test_a_reason_loses_its_bidi_overrides(chat: Chat) -> None:
    await chat.say("new story one")
    reply = await chat.say("reject 1 evil\u202etxt.exe")
    assert reply == "#1 one: backlog → rejected (eviltxt.exe)."


async def test_depends_given_twice_merges(chat: Chat) -> None:
    for n in range(3):
        await chat.say(f"new story s{n}")
    reply = await chat.say("new bug X --depends 1 --depends 2,3")
    assert reply == "Created #4 X (bug) in webshop.\nDepends on: #1, #2, #3."
    assert (await chat.say("new bug Y --epic 1 --epic 2")).startswith(
        "Usage: new story|bug|spike|refactor|epic <title…> [--depends 3,4] [--epic N]\n"
        "--epic given twice"
    )


async def test_waiting_on_is_for_backlog_items_and_never_names_a_purged_one(chat: Chat) -> None:
    for text in ("new story base", "new story gone", "new story child --depends 1,2"):
        await chat.say(text)
    assert "#3 child (waiting on: #1, #2)" in await chat.say("status")

    assert (await chat.say("purge 2")).startswith("Purged #2 gone")
    assert "#3 child (waiting on: #1) ·" in await chat.say("status")

    await chat.say("move 3 coding")
    board = await chat.say("status")
    assert "#3 child ·" in board and "waiting on" not in board


async def test_a_timer_refuses_a_move_the_item_cannot_make_and_says_why(chat: Chat) -> None:
    await chat.say("new story one")
    ops = await chat.ops()

    reply = await chat.say("timer 1 +30m move qa")

    assert reply == "#1 is in backlog; cannot move to qa. It can go to: coding."
    assert await chat.ops() == ops
    assert await chat.say("timers") == "No timers in webshop."
    [item] = await chat.core.engine.store.items("webshop")
    assert item.stage == Backlog()


async def test_a_verb_that_is_not_built_yet_says_so_and_never_reaches_the_llm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(unbuilt, "UNBUILT", (("teleport", "teleport <where>"),))
    registry = Registry()
    unbuilt.register_unbuilt(registry)
    invocation = registry.match("teleport home")
    assert invocation is not None  # so never free text for the LLM

    reply = await registry.run(invocation, CommandContext(Session.of("web:lobby"), "alice", True))

    assert reply.text == f"`teleport <where>` {NOT_YET}"


def test_the_unbuilt_verbs_stay_out_of_help_and_the_tool_list(chat: Chat) -> None:
    listed = {c.name for c in chat.core.registry.commands()}
    assert listed.isdisjoint(name for name, _ in UNBUILT)
    assert "stop" in listed and "new" in listed
