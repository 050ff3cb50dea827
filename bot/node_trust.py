"""Trusted node keys as the daemon manages them (K3): ``node trust`` / ``node revoke``.

The rule itself is :mod:`pipeline.node_ops`; this is the daemon's side: its own key and
``[store] trusted_keys`` are roots (an op cannot revoke them), every other key is trusted
by a ``node.trust`` op until a ``node.revoke`` op.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.nodes_report import node_report
from pipeline.model import Origin
from pipeline.node_ops import RevokeNode, TrustNode, public_key
from pipeline.storage import Storage
from pipeline.store import OpStore


class NodeTrust:
    """Trust and revoke keys through ``store``; ``configured`` is ``[store] trusted_keys``."""

    def __init__(self, store: OpStore, configured: Collection[str]) -> None:
        self.store = store
        self.roots = frozenset({store.author, *configured})

    async def keys(self) -> set[str]:
        """Every key trusted now: the roots and those trusted by ops."""
        return {*self.roots, *await self.store.trusted_keys()}

    async def report(self, storage: Storage) -> str:
        """The ``nodes`` report of ``storage``, marking the keys trusted now."""
        return await node_report(storage, await self.keys())

    async def trust(self, key: str, origin: Origin) -> str:
        """Trust ``key``; the reply line. Raises PipelineError for a malformed key."""
        key = public_key(key.strip().lower())
        if key in await self.keys():
            return f"{key[:12]}… is already trusted."
        await self.store.append(TrustNode(key), origin)
        return f"Trusted {key[:12]}…: its ops are accepted from now on."

    async def revoke(self, key: str, origin: Origin) -> str:
        """Stop trusting ``key``; the reply line (roots are refused with the reason)."""
        key = public_key(key.strip().lower())
        if key == self.store.author:
            return "That is this daemon's own key; it cannot be revoked."
        if key in self.roots:
            return f"{key[:12]}… is listed in [store] trusted_keys; remove it there."
        if key not in await self.store.trusted_keys():
            return f"{key[:12]}… is not trusted; nothing to revoke."
        await self.store.append(RevokeNode(key), origin)
        return f"Revoked {key[:12]}…: its ops are refused from now on."
