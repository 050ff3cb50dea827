"""``approve [N] [always]``, ``deny [N] [reason]`` and ``approvals`` (L7).

The handlers take the ``approvals`` part (:class:`bot.approvals.ApprovalDesk`). None of them
is offered to the LLM: a model must never answer its own questions.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

from bot.approvals import ApprovalDesk
from bot.commands.args import Args, NoArgs, Rest
from bot.commands.registry import CommandContext, Registry
from bot.llm.base import Verdict
from bot.messages import Reply
from config.errors import UsageError

APPROVE_USAGE = "approve [N] [always]"
DENY_USAGE = "deny [N] [reason]"


class AnswerArgs(Args):
    words: Annotated[str, Rest, Field(description="[N] then `always` or a reason")] = ""


def register_approvals(registry: Registry) -> None:
    """Add ``approve``, ``deny`` and ``approvals`` to ``registry``."""

    @registry.command(
        "approve",
        summary="Let the LLM use a tool it asked for (always: from now on, in this room)",
        usage=APPROVE_USAGE,
        args=AnswerArgs,
        tool=False,
    )
    async def approve(ctx: CommandContext, args: AnswerArgs, *, approvals: ApprovalDesk) -> Reply:
        number, rest = _number(args.words)
        if rest.lower() not in ("", "always"):
            raise UsageError(f"Usage: {APPROVE_USAGE}")
        always = rest.lower() == "always"
        text = await approvals.answer(
            ctx.session, number, ctx.sender, ctx.admin, Verdict(True), always=always
        )
        return Reply(text)

    @registry.command(
        "deny",
        summary="Refuse a tool use the LLM asked for",
        usage=DENY_USAGE,
        args=AnswerArgs,
        tool=False,
    )
    async def deny(ctx: CommandContext, args: AnswerArgs, *, approvals: ApprovalDesk) -> Reply:
        number, reason = _number(args.words)
        verdict = Verdict(False, reason)
        return Reply(await approvals.answer(ctx.session, number, ctx.sender, ctx.admin, verdict))

    @registry.command(
        "approvals",
        summary="This room's pending tool uses, standing approvals and past decisions",
        usage="approvals",
        args=NoArgs,
        tool=False,
    )
    async def approvals_(ctx: CommandContext, args: NoArgs, *, approvals: ApprovalDesk) -> Reply:
        return Reply(await render_approvals(approvals, ctx))


def _number(words: str) -> tuple[int | None, str]:
    """``"2 always"`` → ``(2, "always")``; ``"#2"`` → ``(2, "")``; ``"why"`` → ``(None, "why")``."""
    first, _, rest = words.strip().partition(" ")
    digits = first.removeprefix("#")
    if digits.isdecimal() and int(digits) >= 1:
        return int(digits), rest.strip()
    return None, words.strip()


async def render_approvals(desk: ApprovalDesk, ctx: CommandContext) -> str:
    """Rules, pending questions and the last decisions of the room, like ``show``'s history."""
    if not desk.enabled:
        head = ['The LLM uses musher\'s commands only here (`[llm] tools = "commands"`).']
    else:
        rules = await desk.rules(ctx.session)
        head = ["Allowed in this room: " + (", ".join(f"`{r}`" for r in rules) or "nothing yet")]
    pending = desk.pending(ctx.session)
    lines = [*head, "Waiting:" if pending else "Nothing is waiting for approval."]
    lines += [f"  #{q.number} {q.shown} (for {', '.join(sorted(q.senders))})" for q in pending]
    history = await desk.history(ctx.session)
    if history:
        lines.append("History:")
    for d in history:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(d.ts))
        why = f": {d.reason}" if d.reason else ""
        lines.append(f"  {when} {d.decision} — {d.use} (by {d.by}{why})")
    return "\n".join(lines)
