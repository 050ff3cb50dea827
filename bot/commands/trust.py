"""``node trust <pubkey>`` and ``node revoke <pubkey>`` (K3, admin): which node keys may
write to the shared store. The part they name is ``trust`` (:class:`bot.node_trust.NodeTrust`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from bot.commands.args import Args
from bot.commands.registry import CommandContext, Permission, Registry
from bot.messages import Reply
from bot.node_trust import NodeTrust


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class KeyArgs(Args):
    key: Annotated[
        str,
        BeforeValidator(_lower),
        Field(pattern=r"^[0-9a-f]{64}$", description="node public key: 64 hex digits"),
    ]


def register_trust(registry: Registry) -> None:
    """Add ``node trust`` and ``node revoke`` to ``registry``."""

    @registry.command(
        "node trust",
        summary="Accept ops signed by a node key (`musher agent --print-key` shows it)",
        usage="node trust <pubkey>",
        args=KeyArgs,
        permission=Permission.ADMIN,
    )
    async def node_trust(ctx: CommandContext, args: KeyArgs, *, trust: NodeTrust) -> Reply:
        return Reply(await trust.trust(args.key, ctx.origin))

    @registry.command(
        "node revoke",
        summary="Refuse ops signed by a node key from now on",
        usage="node revoke <pubkey>",
        args=KeyArgs,
        permission=Permission.ADMIN,
    )
    async def node_revoke(ctx: CommandContext, args: KeyArgs, *, trust: NodeTrust) -> Reply:
        return Reply(await trust.revoke(args.key, ctx.origin))
