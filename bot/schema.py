"""Every table the daemon keeps in ``<data_dir>/musher.db``, applied at startup."""

from __future__ import annotations

from bot.approvals import SCHEMA as APPROVALS
from bot.cost import SCHEMA as COSTS
from bot.journal import SCHEMA as JOURNAL
from bot.kv import SCHEMA as TRANSPORT_STATE
from bot.llm.claude_sessions import SCHEMA as CLAUDE_SESSIONS
from bot.llm.history import HISTORY_SCHEMA
from pipeline.leases import SCHEMA as LEASES
from pipeline.nodes import SCHEMA as NODES

DAEMON_SCHEMA = (
    JOURNAL
    + COSTS
    + HISTORY_SCHEMA
    + CLAUDE_SESSIONS
    + TRANSPORT_STATE
    + APPROVALS
    + NODES
    + LEASES
)
