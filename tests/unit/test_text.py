"""Mention stripping (I4), paragraph streaming and length splitting (L3), prompt format (D4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.mentions import strip_mention
from bot.messages import QueuedText
from bot.paragraphs import ParagraphBuffer, split_text
from bot.prompt import build_prompt

NAMES = ("musher", "@musher:example.org", "U0BOT")


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("musher: status", "status"),
        ("musher, move 3 qa", "move 3 qa"),
        ("@musher status", "status"),
        ("@Musher: status", "status"),
        ("@musher:example.org: help", "help"),
        ("<@U0BOT> status", "status"),
        ("<@!U0BOT> hi there", "hi there"),
    ],
)
def test_leading_mention_is_stripped(text: str, rest: str) -> None:
    assert strip_mention(text, NAMES) == (rest, True)


@pytest.mark.parametrize("text", ["status", "mushers: hi", "tell musher: hi", "@mushery hi"])
def test_text_without_a_leading_mention_is_kept(text: str) -> None:
    assert strip_mention(text, NAMES) == (text, False)


def test_paragraphs_are_emitted_as_they_complete() -> None:
    buffer = ParagraphBuffer()
    assert buffer.feed("First para") == []
    assert buffer.feed("graph.\n") == []
    assert buffer.feed("\nSecond") == ["First paragraph."]
    assert buffer.feed(" one.\n\nThird") == ["Second one."]
    assert buffer.flush() == "Third"
    assert buffer.flush() == ""


def test_a_code_fence_is_never_cut_at_its_blank_lines() -> None:
    buffer = ParagraphBuffer()
    assert buffer.feed("```\na\n\nb\n```\n\nafter") == ["```\na\n\nb\n```"]
    assert buffer.flush() == "after"


def test_split_prefers_paragraphs_then_lines_then_words() -> None:
    text = "aaaa bbbb\n\ncccc\ndddd"
    assert split_text(text, 100) == [text]
    assert split_text(text, 10) == ["aaaa bbbb", "cccc\ndddd"]
    assert split_text("cccc\ndddd", 5) == ["cccc", "dddd"]
    assert split_text("aaaa bbbb", 5) == ["aaaa", "bbbb"]
    assert split_text("x" * 12, 5) == ["xxxxx", "xxxxx", "xx"]


@given(st.text(alphabet="ab \n", max_size=300), st.integers(min_value=1, max_value=40))
def test_split_respects_the_limit_and_keeps_every_word(text: str, limit: int) -> None:
    chunks = split_text(text, limit)
    assert all(len(c) <= limit for c in chunks)
    assert "".join(text.split()) == "".join("".join(chunks).split())


def test_prompt_keeps_order_and_senders_and_prepends_the_reminder_once() -> None:
    batch = [QueuedText("alice", "one", 1), QueuedText("bob", "two", 2)]
    assert build_prompt(batch) == "alice: one\n\nbob: two"
    prompt = build_prompt(batch, ["audit ts=1 project=p item=1 from=backlog to=coding by=alice"])
    assert prompt.startswith("<system-reminder>\naudit ts=1")
    assert prompt.endswith("</system-reminder>\n\nalice: one\n\nbob: two")
