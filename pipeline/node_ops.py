"""Trusted node keys (K3): the ``node.trust`` and ``node.revoke`` ops and who may author ops.

    kind         columns (project, item)  payload keys
    node.trust   null, null               key (64 hex digits, an Ed25519 public key)
    node.revoke  null, null               key

They keep the ``trusted_keys`` table (one row per trusted key, who trusted it and when).
A key is trusted when it is a *root* — the log's founder (the author of its first op),
a key of ``[store] trusted_keys`` or the checking node's own key — or when a ``node.trust``
op by a trusted author named it and no later ``node.revoke`` did. Roots cannot be revoked
by an op. :class:`TrustWalk` applies that rule over the log in rowid order for
``audit verify``; :func:`is_trusted` answers it inside an append's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pipeline.errors import PipelineError
from pipeline.op_fields import keys, no_item
from pipeline.storage import Conn

TRUSTED_TABLE = """CREATE TABLE IF NOT EXISTS trusted_keys (
    key TEXT PRIMARY KEY, trusted_by TEXT NOT NULL, trusted_at REAL NOT NULL)"""

_HEX_KEY = re.compile(r"[0-9a-f]{64}")


class UntrustedKeyError(PipelineError):
    """An op's author key is not trusted by the store; nothing was written."""


def public_key(value: object) -> str:
    """``value`` when it is a public key as 64 lowercase hex digits, else PipelineError."""
    if not isinstance(value, str) or not _HEX_KEY.fullmatch(value):
        raise PipelineError(f"a node key is 64 hex digits (0-9, a-f), got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TrustNode:
    """Trust ``key``: ops it signs are accepted from now on."""

    KIND: ClassVar[str] = "node.trust"
    key: str

    def __post_init__(self) -> None:
        public_key(self.key)

    def columns(self) -> tuple[str | None, int | None]:
        return None, None

    def to_payload(self) -> dict[str, Any]:
        return {"key": self.key}

    @classmethod
    def from_payload(cls, project: str | None, item: int | None, p: Mapping[str, Any]) -> Self:
        if project is not None:
            raise PipelineError(f"a {cls.KIND} op names no project, got {project!r}")
        no_item(item, cls.KIND)
        keys(p, {"key"})
        return cls(p["key"])


@dataclass(frozen=True, slots=True)
class RevokeNode(TrustNode):
    """Stop trusting ``key``: ops it signs from now on are refused."""

    KIND: ClassVar[str] = "node.revoke"


NODE_CHANGES = (TrustNode, RevokeNode)


def apply_node(conn: Conn, change: TrustNode, author: str, ts: float) -> tuple[str, ...]:
    """Apply one ``node.*`` op to ``trusted_keys`` (idempotent both ways)."""
    if isinstance(change, RevokeNode):
        gone = conn.execute(
            "DELETE FROM trusted_keys WHERE key = ? RETURNING key", (change.key,)
        ).fetchall()
        return ("trusted key",) if gone else ()
    conn.execute(
        "INSERT INTO trusted_keys (key, trusted_by, trusted_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO NOTHING",
        (change.key, author, ts),
    )
    return ()


def is_trusted(conn: Conn, key: str, roots: Collection[str]) -> bool:
    """Inside a write job: whether ``key`` may author ops (a root, the founder, or trusted
    by an op)."""
    if key in roots:
        return True
    if conn.execute("SELECT 1 FROM trusted_keys WHERE key = ?", (key,)).fetchall():
        return True
    first = conn.execute("SELECT author FROM ops ORDER BY rowid LIMIT 1").fetchall()
    return not first or first[0][0] == key  # the founder (or the very first op)


def untrusted(key: str) -> UntrustedKeyError:
    return UntrustedKeyError(
        f"this node's key {key} is not trusted by the store; an admin runs"
        f" `node trust {key}` (or lists it in [store] trusted_keys)"
    )


@dataclass(slots=True)
class TrustWalk:
    """The trust rule over a log read in rowid order (``audit verify``)."""

    roots: set[str]
    trusted: set[str] = field(default_factory=set)
    founded: bool = False

    def check(self, author: object, change: object) -> str | None:
        """Feed the next op; the reason it is refused, or None."""
        if not self.founded and isinstance(author, str):
            self.roots.add(author)
            self.founded = True
        if author not in self.roots and author not in self.trusted:
            return "signed by a key nobody trusted (`node trust <key>`)"
        if isinstance(change, RevokeNode):
            self.trusted.discard(change.key)
        elif isinstance(change, TrustNode):
            self.trusted.add(change.key)
        return None
