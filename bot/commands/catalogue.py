"""Every command the daemon offers, in one registry (chat, slash commands, MCP and tools)."""

from __future__ import annotations

from bot.commands.approvals import register_approvals
from bot.commands.core import register_core
from bot.commands.pipeline import register_pipeline
from bot.commands.registry import Registry
from bot.commands.timers import register_timers


def build_registry() -> Registry:
    """A registry holding the core, pipeline, timer and approval commands."""
    registry = Registry()
    register_core(registry)
    register_pipeline(registry)
    register_timers(registry)
    register_approvals(registry)
    return registry
