"""``musher nodes``: one line per node of the store (K2, K3).

Each line: name, key (hex prefix), role, ``trusted`` or ``untrusted`` (this data dir's own
key and ``[store] trusted_keys`` are trusted), seconds since its last heartbeat, and the
live leases it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from pipeline import leases, nodes
from pipeline.leases import Lease
from pipeline.nodes import Node
from pipeline.storage import Storage


async def node_report(
    storage: Storage, trusted: Collection[str], clock: Callable[[], float] = time.time
) -> str:
    """``musher nodes`` and the ``nodes`` command: the report of ``storage``'s nodes now."""
    now = clock()
    return render(await nodes.nodes(storage), await leases.holders(storage, now), trusted, now)


def render(
    nodes: Sequence[Node], leases: Sequence[Lease], trusted: Collection[str], now: float
) -> str:
    """The report; ``leases`` are the live ones, ``trusted`` the trusted keys."""
    if not nodes:
        return "no nodes yet (a daemon registers itself when it starts)"
    lines = []
    for node in nodes:
        held = sorted(lease.name for lease in leases if lease.owner == node.key)
        lines.append(
            f"{node.name}  {node.key[:12]}…  {node.role}"
            f"  {'trusted' if node.key in trusted else 'untrusted'}"
            f"  heartbeat {max(0.0, now - node.heartbeat_at):.0f} s ago"
            f"  leases: {', '.join(held) if held else 'none'}"
        )
    return "\n".join(lines)
