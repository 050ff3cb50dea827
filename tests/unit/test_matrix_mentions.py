"""How the Matrix transport decides that a message addresses the bot (I4)."""

from __future__ import annotations

from typing import Any

import pytest

from transports.matrix.mentions import is_mentioned

BOT = "@musher:example.org"


@pytest.mark.parametrize(
    "content",
    [
        {"body": "musher: status"},
        {"body": "hey Musher, what's up?"},
        {"body": "@musher:example.org status"},
        {"body": "ping @MUSHER:example.org"},
        {"body": "x", "m.mentions": {"user_ids": [BOT]}},
        {
            "body": "Musher Bot: hi",
            "format": "org.matrix.custom.html",
            "formatted_body": f'<a href="https://matrix.to/#/{BOT}">Musher Bot</a>: hi',
        },
        {
            "body": "pill",
            "formatted_body": '<a href="https://matrix.to/#/%40musher%3Aexample.org">m</a>',
        },
    ],
)
def test_mentions(content: dict[str, Any]) -> None:
    assert is_mentioned(content, BOT, "musher")


@pytest.mark.parametrize(
    "content",
    [
        {"body": "mushers are dog drivers"},
        {"body": "email musher@example.org"},
        {"body": "talk to @musher2:example.org"},
        {"body": "x", "m.mentions": {"user_ids": ["@alice:example.org"]}},
        {"body": "x", "formatted_body": '<a href="https://matrix.to/#/@alice:example.org">a</a>'},
        {"body": None},
        {},
    ],
)
def test_not_mentions(content: dict[str, Any]) -> None:
    assert not is_mentioned(content, BOT, "musher")


def test_without_a_display_name_only_the_id_counts() -> None:
    assert not is_mentioned({"body": "musher: hi"}, BOT, None)
    assert is_mentioned({"body": f"{BOT}: hi"}, BOT, None)
