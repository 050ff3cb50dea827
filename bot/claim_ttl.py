"""Claim TTL (K3): a build node's claim lapses ``[store] claim_ttl_s`` after its last
heartbeat, and a live build node takes it over.

:func:`release_stale` finds active ``agent_runs`` rows of agent nodes (``agent:<name>``)
whose node (``nodes``, by name) has not beaten for ``claim_ttl_s`` — or, if the node never
registered, whose row has not moved for that long — and claims each with ``takeover``
naming the lapsed node. The claim is conditional on the row still being that node's
(:func:`pipeline.agent_rows.apply_agent`), so of several nodes racing only one wins and
the handover is one op; the taker's pool then resumes the item from the pushed branch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline import nodes
from pipeline.agent_ops import ClaimAgent
from pipeline.agent_rows import AgentRun
from pipeline.errors import PipelineError
from pipeline.model import SystemOrigin
from pipeline.storage import Storage
from pipeline.store import OpStore

log = logging.getLogger("musher.agent")

AGENT_PREFIX = "agent:"
HANDOVER = SystemOrigin("agents", "claim handover")


def lapsed(
    runs: list[AgentRun], beats: dict[str, float], ttl_s: float, now: float
) -> list[AgentRun]:
    """The active runs of agent nodes silent for ``ttl_s`` (``beats``: name → last beat)."""
    out = []
    for run in runs:
        if not run.active or not run.node.startswith(AGENT_PREFIX):
            continue
        last = beats.get(run.node.removeprefix(AGENT_PREFIX), run.heartbeat)
        if now - last >= ttl_s:
            out.append(run)
    return out


async def release_stale(
    storage: Storage, store: OpStore, me: str, ttl_s: float,
    clock: Callable[[], float] = time.time,
) -> list[tuple[str, int]]:  # fmt: skip
    """Take over (as node ``me``) every claim whose agent node lapsed; the items taken."""
    beats = {node.name: node.heartbeat_at for node in await nodes.nodes(storage)}
    taken = []
    for run in lapsed(await store.agent_runs(), beats, ttl_s, clock()):
        if run.node == me:
            continue
        claim = ClaimAgent(run.project, run.item, run.profile, run.role, me, run.attempts,
                           takeover=run.node)  # fmt: skip
        try:
            await store.append(claim, HANDOVER)
        except PipelineError as err:  # another node took it first
            log.info("not taking over %s #%d: %s", run.project, run.item, err)
            continue
        log.warning("took over %s #%d from %s (no heartbeat for %.0f s)", run.project, run.item,
                    run.node, ttl_s)  # fmt: skip
        taken.append((run.project, run.item))
    return taken
