"""Trusted node keys (K3): only trusted keys append; ``audit verify`` flags the others.

On both backends: a daemon (the founder) and a build agent's key; the agent is refused until
``node.trust``, accepted after, refused again after ``node.revoke``; an op smuggled in under
an unknown key is named by the audit that is given the trusted keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store_url import open_db
from pipeline.audit import BadOp, verify
from pipeline.canonical import canonical_json
from pipeline.envelope import origin_json, seal
from pipeline.keys import NodeKey
from pipeline.model import Coding, ItemKind, SystemOrigin, UserOrigin
from pipeline.node_ops import RevokeNode, TrustNode, UntrustedKeyError
from pipeline.ops import CreateProject, SetRoom, UpdateItem
from pipeline.storage import Conn
from pipeline.store import OpStore

ADMIN = UserOrigin("web", "admin", "lobby")
AGENT = SystemOrigin("agent", "builder-1")
FIELDS = ("project", "item", "kind", "payload", "origin", "author", "seq", "ts", "sig")


async def count_ops(store: OpStore) -> int:
    return len(await store.item_ops("demo", 1))


async def test_an_agent_key_appends_only_while_trusted(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path)
    try:
        daemon = await OpStore.open(db, NodeKey.generate())
        await daemon.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ADMIN)
        await daemon.create_item("demo", ADMIN, kind=ItemKind.STORY, title="one")
        agent = await OpStore.open(db, NodeKey.generate(), self_trusted=False)

        with pytest.raises(UntrustedKeyError, match=f"node trust {agent.author}"):
            await agent.append(UpdateItem("demo", 1, stage=Coding()), AGENT)
        assert await count_ops(daemon) == 1

        await daemon.append(TrustNode(agent.author), ADMIN)
        assert await daemon.trusted_keys() == {agent.author}
        await agent.append(UpdateItem("demo", 1, stage=Coding()), AGENT)
        assert await count_ops(daemon) == 2

        await daemon.append(RevokeNode(agent.author), ADMIN)
        with pytest.raises(UntrustedKeyError):
            await agent.append(UpdateItem("demo", 1, title="again"), AGENT)
        assert await daemon.trusted_keys() == set()

        report = await verify(db, {daemon.author})
        assert report.ok, str(report)
        assert report.authors == 2
    finally:
        await db.aclose()


async def test_configured_keys_are_trusted_without_an_op(store_url: str, tmp_path: Path) -> None:
    db = await open_db(store_url, tmp_path)
    try:
        daemon = await OpStore.open(db, NodeKey.generate())
        await daemon.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ADMIN)
        key = NodeKey.generate()
        agent = await OpStore.open(db, key, trusted=[key.public_hex], self_trusted=False)
        await agent.append(SetRoom("web:lobby", project="demo"), AGENT)
        assert (await verify(db, {key.public_hex})).ok
        bad = (await verify(db, set())).problem
        assert isinstance(bad, BadOp) and bad.author == key.public_hex
    finally:
        await db.aclose()


def smuggle(conn: Conn, key: NodeKey, seq: int) -> None:
    """An op validly signed by ``key``, written behind the store's back (no trust check)."""
    change = SetRoom("web:evil", ambient=True)
    op = seal(change, canonical_json(change.to_payload()), origin_json(AGENT), key, seq, 2e9)
    conn.execute(
        f"INSERT INTO ops ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
        tuple(getattr(op, name) for name in FIELDS),
    )
    conn.execute(
        "INSERT INTO rooms (session, project, ambient, tools) VALUES (?, NULL, 1, '[]')",
        ("web:evil",),
    )


@pytest.mark.parametrize("revoked", [False, True])
async def test_an_op_by_an_untrusted_key_is_flagged_by_the_audit(
    store_url: str, tmp_path: Path, revoked: bool
) -> None:
    db = await open_db(store_url, tmp_path)
    try:
        daemon = await OpStore.open(db, NodeKey.generate())
        await daemon.append(CreateProject("demo", "/srv/demo", "main", "UTC"), ADMIN)
        stranger = NodeKey.generate()
        if revoked:  # trusted once, revoked, then writes anyway
            await daemon.append(TrustNode(stranger.public_hex), ADMIN)
            await daemon.append(RevokeNode(stranger.public_hex), ADMIN)
        await db.write(lambda conn: smuggle(conn, stranger, 1))

        assert (await verify(db)).ok  # integrity alone: signed, in order, replays
        report = await verify(db, {daemon.author})
        assert isinstance(report.problem, BadOp), str(report)
        assert report.problem.author == stranger.public_hex
        assert report.problem.kind == "room.set"
        assert "nobody trusted" in report.problem.reason
    finally:
        await db.aclose()
