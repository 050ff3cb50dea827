"""Every command the daemon offers, in one registry (chat, slash commands, MCP and tools)."""

from __future__ import annotations

from bot.commands.agents import register_agents
from bot.commands.approvals import register_approvals
from bot.commands.core import register_core
from bot.commands.merging import register_merging
from bot.commands.pipeline import register_pipeline
from bot.commands.projects import register_projects
from bot.commands.registry import Registry
from bot.commands.timers import register_timers
from bot.commands.trust import register_trust
from bot.commands.unbuilt import register_unbuilt


def build_registry() -> Registry:
    """A registry holding the core, pipeline, project, timer and approval commands, then the
    verbs that answer "not available yet" (registered last)."""
    registry = Registry()
    register_core(registry)
    register_pipeline(registry)
    register_projects(registry)
    register_timers(registry)
    register_approvals(registry)
    register_merging(registry)
    register_agents(registry)
    register_trust(registry)
    register_unbuilt(registry)
    return registry
