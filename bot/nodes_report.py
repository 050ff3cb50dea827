"""``musher nodes``: one line per node of the store (K2, K3).

Each line: name, key (hex prefix), role, ``trusted`` or ``untrusted`` (this data dir's own
key and ``[store] trusted_keys`` are trusted), seconds since its last heartbeat, the live
leases it holds and, when it has any, the items it has claimed (``agent_runs`` rows still
pending or running: ``agent:<name>`` for a build node, ``daemon:<key prefix>`` for a
daemon).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pipeline import leases, nodes
from pipeline.leases import Lease
from pipeline.nodes import Node
from pipeline.storage import Storage


async def node_report(
    storage: Storage, trusted: Collection[str], clock: Callable[[], float] = time.time
) -> str:
    """``musher nodes`` and the ``nodes`` command: the report of ``storage``'s nodes now."""
    now = clock()
    tables = await storage.read("SELECT name FROM sqlite_master WHERE type = 'table'")
    rows: Sequence[Any] = ()
    if "agent_runs" in {t[0] for t in tables}:  # a store no daemon opened yet has none
        rows = await storage.read(
            "SELECT node, project, item FROM agent_runs WHERE state IN ('pending', 'running')"
            " ORDER BY project, item"
        )
    claims = [(str(r[0]), f"{r[1]} #{r[2]}") for r in rows]
    return render(
        await nodes.nodes(storage), await leases.holders(storage, now), trusted, now, claims
    )


def render(
    nodes: Sequence[Node],
    leases: Sequence[Lease],
    trusted: Collection[str],
    now: float,
    claims: Sequence[tuple[str, str]] = (),
) -> str:
    """The report; ``leases`` are the live ones, ``trusted`` the trusted keys, ``claims``
    ``(agent_runs node, "project #N")`` of the active runs."""
    if not nodes:
        return "no nodes yet (a daemon registers itself when it starts)"
    lines = []
    for node in nodes:
        held = sorted(lease.name for lease in leases if lease.owner == node.key)
        lines.append(
            f"{node.name}  {node.key[:12]}…  {node.role}"
            f"  {'trusted' if node.key in trusted else 'untrusted'}"
            f"  heartbeat {max(0.0, now - node.heartbeat_at):.0f} s ago"
            f"  leases: {', '.join(held) if held else 'none'}" + _claims(node, claims)
        )
    return "\n".join(lines)


def _claims(node: Node, claims: Sequence[tuple[str, str]]) -> str:
    label = f"agent:{node.name}" if node.role == "agent" else f"daemon:{node.key[:16]}"
    items = [item for holder, item in claims if holder == label]
    return f"  claims: {', '.join(items)}" if items else ""
