"""Which provider answers free text (``[llm] provider``), and why — for the daemon and ``check``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bot.db import Db
from bot.llm.anthropic import AnthropicWire
from bot.llm.base import McpConfig, Provider
from bot.llm.chat import ChatProvider
from bot.llm.history import History
from bot.llm.openai import OpenAIWire
from bot.llm.simple import EchoProvider, NoneProvider
from config.models import Settings


@dataclass(frozen=True, slots=True)
class Choice:
    name: str  # the concrete provider: claude-cli, openai, anthropic, echo, none
    reason: str


def choose(settings: Settings) -> Choice:
    """Resolve ``auto`` and say why, without starting anything."""
    configured = settings.llm.provider
    command = settings.llm.claude_cli.command[0]
    if configured != "auto":
        return Choice(configured, "set by [llm] provider")
    found = shutil.which(command)
    if found:
        return Choice("claude-cli", f"auto: {command!r} is on PATH at {found}")
    return Choice("none", f"auto: {command!r} is not on PATH, so free text gets no LLM")


def make_provider(settings: Settings, db: Db, mcp_config: McpConfig) -> Provider:
    """Build the chosen provider over the daemon's database; ``mcp_config`` gives a CLI
    provider's turns their tools (the daemon passes ``McpBridge.config_for``)."""
    llm = settings.llm
    match choose(settings).name:
        case "echo":
            return EchoProvider(llm.echo.delay_s)
        case "openai":
            return ChatProvider(OpenAIWire(llm.openai), History(db), llm.history_size)
        case "anthropic":
            return ChatProvider(AnthropicWire(llm.anthropic), History(db), llm.history_size)
        case "claude-cli":
            from bot.llm.claude_cli import ClaudeCliProvider
            from bot.llm.claude_sessions import ClaudeSessions

            return ClaudeCliProvider(
                llm.claude_cli,
                ClaudeSessions(db),
                mcp_config,
                state_dir=db.data_dir / "tmp",
            )
        case _:
            return NoneProvider()
