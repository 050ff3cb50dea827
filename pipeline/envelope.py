"""The signed envelope of an op: what the ``ops`` table stores and what replay reads (S2).

Each op carries project, item, kind, payload (canonical JSON), origin (canonical JSON,
never empty), author public key, author sequence number, time, and an Ed25519 signature
over the canonical JSON of all of those, prefixed with a domain tag.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from json.encoder import encode_basestring as _string
from typing import Any

from pipeline.canonical import canonical_bytes, canonical_json, loads, parse_canonical
from pipeline.errors import PipelineError
from pipeline.keys import NodeKey
from pipeline.model import Origin
from pipeline.ops import CHANGES, Change, UpdateItem
from pipeline.storage import Storage

SIGNING_DOMAIN = b"musher.op.v1\n"
"""Prefix of every signed message, so an op signature can never pass for anything else."""

OP_COLUMNS = "rowid, project, item, kind, payload, origin, author, seq, ts, sig"
"""The ``ops`` columns :func:`op_from_row` reads, in its order."""


def origin_json(origin: object) -> str:
    """The canonical JSON of an op's origin, refusing missing or blank attribution (S2).

    Raises:
        PipelineError: ``origin`` is not an :class:`Origin`, or any of its fields is blank.
            Checked before any write, so an unattributed change never reaches the log.
    """
    if isinstance(origin, Origin):
        return _origin_json(origin)  # origins are frozen and repeat: each is encoded once
    return _checked_origin_json(origin)


@functools.lru_cache(maxsize=1024)
def _origin_json(origin: Origin) -> str:
    return _checked_origin_json(origin)


def _checked_origin_json(origin: object) -> str:
    if not isinstance(origin, Origin):
        raise PipelineError(f"every change needs an origin (who caused it), got {origin!r}")
    fields = origin.to_dict()
    if not fields or any(not isinstance(v, str) or not v.strip() for v in fields.values()):
        raise PipelineError(f"an origin must name who caused the change, got {fields!r}")
    return canonical_json(fields)


def _plain(op: SignedOp) -> bool:
    """Whether every signed field of ``op`` has the exact type :func:`_canonical_text` writes
    (no bool posing as an int, no str or float subclass) and its time is finite."""
    return (
        type(op.kind) is str
        and type(op.payload) is str
        and type(op.origin) is str
        and type(op.author) is str
        and type(op.seq) is int
        and type(op.ts) is float
        and math.isfinite(op.ts)
        and (op.project is None or type(op.project) is str)
        and (op.item is None or type(op.item) is int)
    )


def _canonical_text(op: SignedOp) -> str:
    """The canonical JSON of a :func:`_plain` op's signed fields, keys sorted."""
    project = "null" if op.project is None else _string(op.project)
    item = "null" if op.item is None else int.__repr__(op.item)
    return (
        f'{{"author":{_string(op.author)},"item":{item},"kind":{_string(op.kind)},'
        f'"origin":{_string(op.origin)},"payload":{_string(op.payload)},"project":{project},'
        f'"seq":{int.__repr__(op.seq)},"ts":{float.__repr__(op.ts)}}}'
    )


@dataclass(frozen=True, slots=True)
class SignedOp:
    """One op as stored in the ``ops`` table; ``rowid`` is None until inserted.

    ``sig`` signs :meth:`signed_message`: every other field except ``rowid``, whose order
    (insertion order) is what replay follows (S1).
    """

    project: str | None
    item: int | None
    kind: str
    payload: str
    origin: str
    author: str
    seq: int
    ts: float
    sig: bytes = b""
    rowid: int | None = None

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers (domain prefix + canonical JSON).

        Fields of their usual exact types are written out directly, keys in sorted order
        as :func:`canonical_bytes` writes them (a property test holds the two equal): that
        is a quarter of the cost, paid for each op on every append and by ``audit verify``.
        Anything else, a lone surrogate included, takes :func:`canonical_bytes`, which
        refuses what JSON cannot carry exactly."""
        if _plain(self):
            with contextlib.suppress(UnicodeEncodeError):
                return SIGNING_DOMAIN + _canonical_text(self).encode()
        fields = {"project": self.project, "item": self.item, "kind": self.kind,
                  "payload": self.payload, "origin": self.origin, "author": self.author,
                  "seq": self.seq, "ts": self.ts}  # fmt: skip
        return SIGNING_DOMAIN + canonical_bytes(fields)

    def stored_as(self, rowid: int) -> SignedOp:
        """This op as inserted at ``rowid``."""
        return SignedOp(*self._fields(), self.sig, rowid)

    def _fields(self) -> tuple[str | None, int | None, str, str, str, str, int, float]:
        return (self.project, self.item, self.kind, self.payload, self.origin, self.author,
                self.seq, self.ts)  # fmt: skip

    def decode(self) -> Change:
        """The change this op records, checked as strictly as a new one (origin included).

        Raises:
            PipelineError: unknown kind, non-canonical payload or origin, an origin of no
                known shape or with a blank field, or fields the change refuses.
        """
        _check_origin(self.origin)
        known = _UPDATES.get(self.payload) if self.kind == UpdateItem.KIND else None
        if known is not None:
            return known.of_item(self.project, self.item)
        cls = CHANGES.get(self.kind)
        if cls is None:
            raise PipelineError(f"unknown op kind {self.kind!r}")
        payload = _payload_value(self.payload)
        if not isinstance(payload, dict):
            raise PipelineError("an op payload must be a JSON object")
        try:
            change: Change = cls.from_payload(self.project, self.item, payload)
        except (TypeError, ValueError) as exc:
            raise PipelineError(f"bad {self.kind} payload: {exc}") from None
        if change.columns() != (self.project, self.item):
            raise PipelineError(f"the op's project/item columns do not match its {self.kind}")
        if isinstance(change, UpdateItem):
            if len(_UPDATES) >= _SEEN_MAX:
                _UPDATES.clear()
            _UPDATES[self.payload] = change
        return change


_UPDATES: dict[str, UpdateItem] = {}
"""Item updates by payload text (at most ``_SEEN_MAX``): a log repeats the same few stage
moves for every item, and :meth:`UpdateItem.of_item` reuses one's checked fields."""


@functools.lru_cache(maxsize=1024)
def _check_origin(text: object) -> None:
    """Whether an op's origin text is canonical and of a known shape (raises if not).

    Origins repeat across a log (a handful of people, agents and daemon reasons), so each
    distinct text is checked once; a text that fails raises every time (not cached).
    """
    Origin.from_dict(parse_canonical(text))


_CANONICAL_SEEN: dict[str, None] = {}
"""Payload texts already found canonical (at most ``_SEEN_MAX``; then it starts over)."""
_SEEN_MAX = 4096


def _payload_value(text: object) -> Any:
    """:func:`parse_canonical` of an op payload; a text already found canonical is only
    parsed again (stage moves and the like repeat the very same payload text)."""
    if isinstance(text, str) and text in _CANONICAL_SEEN:
        return loads(text)
    value = parse_canonical(text)
    assert isinstance(text, str)  # parse_canonical refuses anything else
    if len(_CANONICAL_SEEN) >= _SEEN_MAX:
        _CANONICAL_SEEN.clear()
    _CANONICAL_SEEN[text] = None
    return value


def seal(change: Change, payload: str, origin: str, key: NodeKey, seq: int, ts: float) -> SignedOp:
    """Sign ``change`` as op ``seq`` of ``key`` at time ``ts``.

    ``payload`` is ``canonical_json(change.to_payload())`` and ``origin`` the result of
    :func:`origin_json`, both computed by the caller before it starts writing.
    """
    project, item = change.columns()
    unsigned = SignedOp(project, item, change.KIND, payload, origin, key.public_hex, seq, float(ts))
    return SignedOp(*unsigned._fields(), key.sign(unsigned.signed_message()))


async def ops_after(storage: Storage, after: int, limit: int) -> list[SignedOp]:
    """Up to ``limit`` ops of the log after insertion id ``after``, in insertion order."""
    query = f"SELECT {OP_COLUMNS} FROM ops WHERE rowid > ? ORDER BY rowid LIMIT ?"
    return [op_from_row(row) for row in await storage.read(query, (after, limit))]


def op_from_row(row: Any) -> SignedOp:
    """An op from a row of ``SELECT {OP_COLUMNS}``; values are taken as stored, unchecked."""
    r = tuple(row)
    return SignedOp(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[0])  # field order
