"""Every table the daemon keeps in ``<data_dir>/musher.db``, applied at startup."""

from __future__ import annotations

from bot.cost import SCHEMA as COSTS
from bot.journal import SCHEMA as JOURNAL

DAEMON_SCHEMA = JOURNAL + COSTS
