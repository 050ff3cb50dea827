"""The command registry: matching, argument parsing, usage errors, permissions (C1, C4)."""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands.args import Args, ItemNumber, NoArgs, Option, Rest, parse_args, split_words
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply, Session
from config.errors import UsageError


class MoveArgs(Args):
    number: ItemNumber
    stage: Literal["backlog", "coding", "qa"]


class NewArgs(Args):
    title: Annotated[str, Rest]
    depends: Annotated[str | None, Option("--depends")] = None


def make_registry() -> tuple[Registry, list[Any]]:
    registry = Registry()
    calls: list[Any] = []

    @registry.command("move", summary="Move", usage="move N <stage>", args=MoveArgs, aliases=["mv"])
    async def move(ctx: CommandContext, args: MoveArgs) -> Reply:
        calls.append(args)
        return Reply(f"moved {args.number} to {args.stage}")

    @registry.command("new story", summary="New", usage="new story <title…>", args=NewArgs)
    async def new(ctx: CommandContext, args: NewArgs) -> Reply:
        calls.append(args)
        return Reply(f"created {args.title!r} deps={args.depends}")

    @registry.command(
        "purge", summary="Purge", usage="purge N", args=NoArgs, permission=Permission.ADMIN
    )
    async def purge(ctx: CommandContext, args: NoArgs) -> Reply:
        calls.append("purged")
        return Reply("purged")

    @registry.command("boom", summary="Fails", usage="boom", args=NoArgs)
    async def boom(ctx: CommandContext, args: NoArgs) -> Reply:
        raise RuntimeError("kaput")

    return registry, calls


def ctx(admin: bool = True) -> CommandContext:
    return CommandContext(Session.of("web:lobby"), "alice", admin)


@pytest.mark.parametrize("text", ["move 12 qa", "MOVE #12 qa", "!move 12 qa", "/mv 12 qa"])
async def test_commands_match_case_insensitively_with_prefixes_and_aliases(text: str) -> None:
    registry, _ = make_registry()
    invocation = registry.match(text)
    assert invocation is not None
    assert (await registry.run(invocation, ctx())).text == "moved 12 to qa"


def test_free_text_and_unknown_verbs_are_not_commands() -> None:
    registry, _ = make_registry()
    assert registry.match("please move the car") is None
    assert registry.match("") is None
    assert registry.match("new idea: more tests") is None  # `new` alone is not registered here


async def test_two_word_commands_take_the_rest_and_options() -> None:
    registry, _ = make_registry()
    invocation = registry.match("new story Login page don't break --depends 3,4")
    assert invocation is not None
    reply = await registry.run(invocation, ctx())
    assert reply.text == 'created "Login page don\'t break" deps=3,4'


@pytest.mark.parametrize(
    "text", ["move", "move 12", "move x qa", "move 12 nowhere", "move 1 qa extra"]
)
async def test_bad_arguments_get_the_usage_line_and_change_nothing(text: str) -> None:
    registry, calls = make_registry()
    invocation = registry.match(text)
    assert invocation is not None
    reply = await registry.run(invocation, ctx())
    assert reply.text.startswith("Usage: move N <stage>")
    assert calls == []


async def test_admin_only_commands_refuse_others() -> None:
    registry, calls = make_registry()
    invocation = registry.match("purge")
    assert invocation is not None
    assert "admins only" in (await registry.run(invocation, ctx(admin=False))).text
    assert calls == []
    assert (await registry.run(invocation, ctx(admin=True))).text == "purged"


async def test_a_crashing_handler_becomes_a_reply() -> None:
    registry, _ = make_registry()
    invocation = registry.match("boom")
    assert invocation is not None
    assert "internal error" in (await registry.run(invocation, ctx())).text


async def test_invoke_with_json_arguments_validates_them() -> None:
    registry, _ = make_registry()
    assert (
        await registry.invoke("move", {"number": 3, "stage": "qa"}, ctx())
    ).text == "moved 3 to qa"
    bad = await registry.invoke("move", {"number": 3, "stage": "qa", "extra": 1}, ctx())
    assert bad.text.startswith("Usage: move N <stage>")
    assert (await registry.invoke("nope", {}, ctx())).text.startswith("Unknown command")


def test_parse_args_rejects_unknown_options() -> None:
    with pytest.raises(UsageError, match="Usage: new"):
        parse_args(NewArgs, ["title", "--epic", "3"], "new story <title…>")


def test_names_are_unique() -> None:
    registry, _ = make_registry()

    async def other(ctx: CommandContext, args: NoArgs) -> Reply:
        return Reply("")

    with pytest.raises(ValueError, match="twice"):
        registry.command("mv", summary="x", usage="mv", args=NoArgs)(other)


async def test_a_handler_gets_exactly_the_parts_it_names() -> None:
    registry = Registry()
    seen: list[object] = []

    @registry.command("count", summary="Count", usage="count", args=NoArgs)
    async def count(ctx: CommandContext, args: NoArgs, *, counter: list[int]) -> Reply:
        counter.append(1)
        seen.append(counter)
        return Reply(f"{len(counter)} in {ctx.session.transport}/{ctx.session.room}")

    assert registry.missing() == ["count: counter"]
    counter: list[int] = []
    registry.provide(counter=counter, unused="never handed to anyone")
    assert registry.missing() == []
    invocation = registry.match("count")
    assert invocation is not None
    assert (await registry.run(invocation, ctx())).text == "1 in web/lobby"
    assert seen == [counter]


@given(st.text(st.sampled_from("ab1 \t\r\n\x0b\x0c\u00a0\u2003'\"\\#"), max_size=12))
def test_words_split_as_the_shell_would(text: str) -> None:
    """Plain words take a quick path; whatever the text, the words are shlex's (or, with
    unbalanced quotes, the whitespace split)."""
    try:
        expected = shlex.split(text)
    except ValueError:
        expected = text.split()
    assert split_words(text) == expected
