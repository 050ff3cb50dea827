"""``SignedOp.signed_message`` writes plain ops out directly: the bytes must be exactly the
canonical JSON of the signed fields (what every stored signature covers), and whatever the
canonical encoder refuses is refused the same way."""

from __future__ import annotations

import enum
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.canonical import canonical_bytes
from pipeline.envelope import SIGNING_DOMAIN, SignedOp
from pipeline.errors import PipelineError


class Kind(enum.StrEnum):
    UPDATE = "item.update"


any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
strings = any_text | st.sampled_from(["", '"', "\\", "\n\t\x00\x1f", "é€😀", "\u2028"])
integers = st.integers(-(2**70), 2**70)
odd = st.sampled_from([True, False, Kind.UPDATE, 1.0, math.nan, math.inf, -math.inf, [1]])


def generic(op: SignedOp) -> bytes:
    fields = {"project": op.project, "item": op.item, "kind": op.kind, "payload": op.payload,
              "origin": op.origin, "author": op.author, "seq": op.seq, "ts": op.ts}  # fmt: skip
    return SIGNING_DOMAIN + canonical_bytes(fields)


def outcome(make: object) -> bytes | str:
    try:
        return make()  # type: ignore[operator, no-any-return]
    except PipelineError:
        return "refused"


@settings(max_examples=500, deadline=None)
@given(
    project=st.none() | strings | odd,
    item=st.none() | integers | odd,
    kind=strings | odd,
    payload=strings,
    origin=strings,
    author=strings,
    seq=integers | odd,
    ts=st.floats() | integers | odd,
)
def test_signed_message_is_the_canonical_json_of_the_signed_fields(
    project: object,
    item: object,
    kind: object,
    payload: str,
    origin: str,
    author: str,
    seq: object,
    ts: object,
) -> None:
    op = SignedOp(project, item, kind, payload, origin, author, seq, ts, b"s" * 64, 7)  # type: ignore[arg-type]
    assert outcome(op.signed_message) == outcome(lambda: generic(op))


def test_a_typical_op_is_signed_over_sorted_keys() -> None:
    op = SignedOp(None, 12, "item.update", '{"state":"qa"}', '{"user":"bob"}', "ab", 3, 1.5)
    assert op.signed_message() == SIGNING_DOMAIN + (
        b'{"author":"ab","item":12,"kind":"item.update","origin":"{\\"user\\":\\"bob\\"}",'
        b'"payload":"{\\"state\\":\\"qa\\"}","project":null,"seq":3,"ts":1.5}'
    )


def test_a_lone_surrogate_is_refused() -> None:
    op = SignedOp("p", 1, "item.update", "{}", "{}", "\ud800", 1, 1.0)
    with pytest.raises(PipelineError):
        op.signed_message()
