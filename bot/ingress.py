"""Ingress: the one door every transport's messages come through (I1–I4, C1).

Order for each message: drop the bot's own (I2) → strip a leading mention (I4) → decide
whether it is addressed, allowed (I3), a command or free text → journal it durably (I1,
a redelivery stops here) → act: run the command and reply, or hand the text to the
dispatcher. Stranger and unaddressed messages are journalled too (for dedupe) but cost
nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from bot.commands.registry import CommandContext
from bot.journal import Kind, Pending, State
from bot.mentions import strip_mention
from bot.messages import InboundMessage, QueuedText, Reply, session_key
from bot.services import Services
from bot.transport import FeedResult
from pipeline.crashpoints import crash_point

log = logging.getLogger("musher.ingress")

REFUSAL = "Sorry, I only answer people I was set up for. Ask an admin to add you."
INTERRUPTED = "⚠️ musher restarted while answering; answering again."
COMMAND_INTERRUPTED = (
    "⚠️ musher restarted while running `{text}`; check the result and retry if needed."
)


class Ingress:
    def __init__(self, services: Services, identities: Mapping[str, tuple[str, ...]]) -> None:
        self.services = services
        self.identities = identities  # per transport: the bot's own ids/names, read live
        # journal ids fed in this run before replay() read the journal: not replayed twice
        self._fed_before_replay: set[int] | None = set()

    async def feed(self, msg: InboundMessage) -> FeedResult:
        """Journal ``msg`` (durably, before returning) and act on it."""
        s = self.services
        own = self.identities.get(msg.transport, ())
        if msg.sender in own:
            s.metrics.inbound.inc("ignored")
            return FeedResult.IGNORED
        text, mentioned = strip_mention(msg.text, (s.settings.daemon.name, *own))
        policy = s.policy(msg.transport)
        addressed = msg.mentioned or mentioned or msg.session in s.ambient
        invocation = s.registry.match(text) if addressed else None
        if not addressed:
            kind = Kind.IGNORED
        elif not policy.allows(msg.sender):
            kind = Kind.REFUSED
        else:
            kind = Kind.COMMAND if invocation else Kind.TEXT
        recorded = await s.journal.record(msg, kind, text)
        if recorded is None:
            s.metrics.inbound.inc("deduped")
            return FeedResult.DUPLICATE
        journal_id, entry = recorded
        crash_point("after-journal")
        if self._fed_before_replay is not None:
            self._fed_before_replay.add(journal_id)
        if entry is not None:
            s.feed.publish(msg.session, entry)
        if kind is Kind.IGNORED:
            s.metrics.inbound.inc("ignored")
            return FeedResult.IGNORED
        if kind is Kind.REFUSED:
            s.metrics.inbound.inc("refused")
            await self._refuse(msg)
            return FeedResult.REFUSED
        s.metrics.inbound.inc("accepted")
        if invocation is not None:
            ctx = CommandContext(msg.session, msg.sender, policy.is_admin(msg.sender), s)
            reply = await s.registry.run(invocation, ctx)
            await s.journal.mark([journal_id], State.DONE)
            if reply.text:
                reply = dataclasses.replace(
                    reply,
                    key=f"c{journal_id}",
                    reply_to=msg.reply_to,
                    ephemeral=reply.ephemeral or msg.ephemeral_ok,
                )
                await s.outbox.send(msg.session, reply)
        else:
            s.dispatcher.submit(msg.session, QueuedText(msg.sender, text, journal_id, msg.ts))
        return FeedResult.ACCEPTED

    async def _refuse(self, msg: InboundMessage) -> None:
        s = self.services
        if not s.settings.access.reply_to_strangers:
            return
        if await s.journal.first_refusal_today(msg.transport, msg.sender):
            await s.outbox.send(
                msg.session, Reply(REFUSAL, ephemeral=msg.ephemeral_ok, reply_to=msg.reply_to)
            )

    async def replay(self) -> int:
        """Re-dispatch what a crash left unanswered (D6); returns how many messages.

        Rooms whose turn had already started are told the answer was interrupted; an
        interrupted command is reported, not re-run (it may have taken effect).
        """
        pending = await self.services.journal.pending()
        fed, self._fed_before_replay = self._fed_before_replay or set(), None
        return await self._replay([p for p in pending if p.id not in fed])

    async def _replay(self, pending: Sequence[Pending]) -> int:
        s = self.services
        told: set[str] = set()
        interrupted: set[int] = set()
        for p in pending:
            session = session_key(p.transport, p.room)
            if p.kind is Kind.COMMAND:
                await s.journal.mark([p.id], State.DONE)
                await s.outbox.send(session, Reply(COMMAND_INTERRUPTED.format(text=p.text)))
                continue
            if p.turn_id is not None and p.turn_id not in interrupted:
                interrupted.add(p.turn_id)  # told once per turn, then closed: never again
                if session not in told:
                    told.add(session)
                    await s.outbox.send(session, Reply(INTERRUPTED, key=f"r{p.turn_id}"))
            s.dispatcher.submit(session, QueuedText(p.sender, p.text, p.id))
        if interrupted:
            await s.journal.close_interrupted(interrupted)
        if pending:
            log.info("replayed %d unanswered messages after a restart", len(pending))
        return len(pending)
