"""Coding agents (DESIGN.md A1–A4): worktrees, the agent pool, gates after an agent, merge."""
