"""The daemon's parts, wired once by the supervisor and handed to commands and turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.access import AccessPolicy
from bot.audit_buffer import AuditBuffer
from bot.commands.registry import Registry
from bot.cost import CostBook
from bot.dispatcher import Dispatcher
from bot.feed import RoomFeed
from bot.followers import Followers
from bot.journal import Journal
from bot.llm.base import Provider
from bot.mcp_bridge import McpBridge
from bot.metrics import Metrics
from bot.notifier import Notifier
from bot.outbox import Outbox
from config.models import Settings
from pipeline.bus import Bus
from pipeline.engine import Engine
from pipeline.store import OpStore
from pipeline.timers import Timers


@dataclass(slots=True)
class Services:
    settings: Settings
    journal: Journal
    feed: RoomFeed
    metrics: Metrics
    outbox: Outbox
    registry: Registry
    provider: Provider
    dispatcher: Dispatcher
    costs: CostBook
    data_dir: Path
    store: OpStore
    engine: Engine
    bus: Bus  # the engine's changes to the subscribers below (and any added later)
    followers: Followers  # which rooms follow which project
    notifier: Notifier
    timers: Timers
    mcp: McpBridge = field(default_factory=McpBridge)
    audit: AuditBuffer = field(default_factory=AuditBuffer)
    access: dict[str, AccessPolicy] = field(default_factory=dict)
    ambient: set[str] = field(default_factory=set)  # sessions with `ambient on`

    def policy(self, transport: str) -> AccessPolicy:
        return self.access.get(transport, AccessPolicy())
