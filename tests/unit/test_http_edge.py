"""The HTTP edge's pure parts: strict JSON, Host names, bearer tokens, unsafe characters."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.http import parse_json
from bot.http_guard import Credentials, Identity, host_name
from pipeline.text_rules import first_unsafe, scrub
from tests.fakes.slack_payloads import event
from transports.slack.wire import Bot, event_message
from transports.web.wire import WireError, parse_after, parse_post


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xff{}", "not UTF-8"),
        (b'{"a": NaN}', "NaN is not a number"),
        (b'{"a": Infinity}', "Infinity is not a number"),
        (b'["\\ud800"]', "lone surrogates"),
        (b'{"\\udc00": 1}', "lone surrogates"),
        (b'{"a": {"b": "\\uDBFF x"}}', "lone surrogates"),
        (b"[" * 40 + b"]" * 40, "nested deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
        (b"{", "malformed JSON"),
    ],
)
def test_strict_json_refuses_with_a_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_json(raw)


@given(st.recursive(st.none() | st.integers() | st.text(), st.lists, max_leaves=20))
def test_strict_json_reads_what_json_writes(value: object) -> None:
    import json

    encoded = json.dumps(value).encode()
    try:
        assert parse_json(encoded) == value
    except ValueError as err:  # only for the refusals above
        assert "surrogates" in str(err) or "nested" in str(err)


_SURROGATE_TEXT = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4)


@given(st.recursive(st.integers() | _SURROGATE_TEXT, st.lists, max_leaves=40))
def test_strict_json_refuses_exactly_what_it_must(value: object) -> None:
    """The quick look at the raw text (no surrogate escape, too few brackets to nest that
    deep) never lets through a body the full walk of the parsed tree refuses."""
    import json

    def depth(node: object) -> int:
        return 1 + max(map(depth, node), default=0) if isinstance(node, list) else 0

    def lone(node: object) -> bool:
        if isinstance(node, list):
            return any(map(lone, node))
        return isinstance(node, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in node)

    encoded = json.dumps(value).encode()  # ensure_ascii: surrogates as \\u escapes
    decoded = json.loads(encoded)  # a high and a low surrogate in a row: one character
    must_refuse = lone(decoded) or depth(decoded) > 32
    try:
        parse_json(encoded)
    except ValueError:
        assert must_refuse
    else:
        assert not must_refuse


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8765", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:8765", "::1"),
        ("example.org.", "example.org"),
        ("evil:port", None),
        ("[::1", None),
        (":80", None),
    ],
)
def test_host_names(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_tokens_name_users_and_hashes_work() -> None:
    digest = hashlib.sha256(b"ann-token").hexdigest()
    creds = Credentials("shared", {"boss": "boss-token", "ann": f"sha256:{digest}"})
    assert creds.identify("boss-token") == Identity("boss")
    assert creds.identify("ann-token") == Identity("ann")
    assert creds.identify(f"sha256:{digest}") is None  # the hash is not the token
    assert creds.identify("shared") == Identity(None, can_post=False)
    assert creds.identify("   ") is None and creds.identify("nope") is None
    assert Credentials("shared", {}).identify("shared") == Identity(None, can_post=True)


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\u202e", "\u2066", "\ud800"])
def test_unsafe_characters_are_refused_or_scrubbed(char: str) -> None:
    assert first_unsafe(f"a{char}b") == f"U+{ord(char):04X}"
    assert scrub(f"a{char}b") == "ab"
    with pytest.raises(WireError, match=f"U\\+{ord(char):04X}"):
        parse_post({"sender": "al", "text": f"move 1 {char}qa"})
    with pytest.raises(WireError, match="'sender'"):
        parse_post({"sender": f"boss{char}", "text": "hi"})


def test_line_breaks_are_fine_in_text_not_in_names() -> None:
    assert parse_post({"sender": "al", "text": "a\n\tb\r\n"}).text == "a\n\tb\r\n"
    with pytest.raises(WireError):
        parse_post({"sender": "a\nb", "text": "x"})
    assert parse_post({"text": "x"}, sender_required=False).sender == ""


@pytest.mark.parametrize("value", [str(2**63), "9" * 5000, "-1", "1e3", "١", "0x10"])
def test_after_is_a_bounded_decimal(value: str) -> None:
    with pytest.raises(WireError, match="2\\^63-1"):
        parse_after(value)
    assert parse_after(str(2**63 - 1)) == 2**63 - 1


def test_slack_text_is_scrubbed_and_bad_ids_are_dropped() -> None:
    bot = Bot("UBOT", "B1")
    msg = event_message(event("<@UBOT> st\u202eatus\x00"), bot, ())
    assert msg is not None and msg.text == "<@UBOT> status"
    assert event_message(event("<@UBOT> hi", user="U\ud8001"), bot, ()) is None
