"""Ingress: the one door every transport's messages come through (I1–I4, C1).

:meth:`Ingress.feed` decides and journals, then returns, so the transport acknowledges at
once: drop the bot's own (I2) → strip a leading mention (I4) → decide whether it is
addressed (a mention, or the room's ``ambient`` setting), allowed (I3), a command or free
text → journal it durably (I1; a redelivery stops here). Acting on it — running the command
and sending its reply, handing the text to the dispatcher, the polite refusal — happens on
the session's lane (:mod:`bot.lanes`), in journal order. Stranger and unaddressed messages
are journalled too (for dedupe) but cost nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.access import AccessPolicies
from bot.commands.registry import CommandContext, Invocation, Registry
from bot.feed import RoomFeed
from bot.journal import Journal, Kind, Pending, State
from bot.lanes import Action, Lanes
from bot.mentions import strip_mention
from bot.messages import InboundMessage, QueuedText, Reply, Session, session_key
from bot.metrics import Metrics
from bot.transport import FeedResult
from config.models import AccessConfig
from pipeline.crashpoints import crash_point

log = logging.getLogger("musher.ingress")

REFUSAL = "Sorry, I only answer people I was set up for. Ask an admin to add you."
INTERRUPTED = "⚠️ musher restarted while answering; answering again."
COMMAND_INTERRUPTED = (
    "⚠️ musher restarted while running `{text}`; check the result and retry if needed."
)

Send = Callable[[str, Reply], Awaitable[None]]


class Submit(Protocol):
    """Where free text goes (:meth:`bot.dispatcher.Dispatcher.submit`)."""

    def __call__(self, session: str, message: QueuedText, /) -> None: ...


class Typing(Protocol):
    """Where typing goes (:meth:`bot.dispatcher.Dispatcher.typing`)."""

    def __call__(self, session: str, sender: str, seconds: float, /) -> None: ...


class RoomSettings(Protocol):
    """Where a room's ``ambient`` setting is read (:meth:`pipeline.engine.Engine.ambient`)."""

    async def ambient(self, session: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class IngressParts:
    """What ingress decides with, writes to and acts through."""

    journal: Journal
    registry: Registry
    rooms: RoomSettings
    access: AccessPolicies
    submit: Submit
    send: Send
    feed: RoomFeed
    metrics: Metrics
    lanes: Lanes
    bot_name: str
    strangers: AccessConfig  # ``reply_to_strangers``, read per message
    typing: Typing | None = None
    # PostgreSQL: told each free text's journal id as soon as it is journalled, before it
    # reaches ``submit`` (bot.room_handoff: a room's catch-up read leaves it to this intake)
    journalled: Callable[[str, int], None] | None = None


class Ingress:
    """The daemon's :class:`~bot.transport.Sink`."""

    def __init__(self, parts: IngressParts, identities: Mapping[str, tuple[str, ...]]) -> None:
        self.parts = parts
        self.identities = identities  # per transport: the bot's own ids/names, read live
        # journal ids fed in this run before replay() read the journal: not replayed twice
        self._fed_before_replay: set[int] | None = set()
        # sessions whose queued `ambient on|off` has not run yet: (what it sets, journal id)
        self._ambient_queued: dict[str, tuple[bool, int]] = {}
        # (sender, session): messages on their way to the dispatcher, and the typing signal
        # that arrived meanwhile and waits for them
        self._arriving: dict[tuple[str, Session], int] = {}
        self._typing_after: dict[tuple[str, Session], float] = {}

    async def feed(self, msg: InboundMessage) -> FeedResult:
        """Decide and journal ``msg`` (durably, before returning); act on it afterwards.

        Acting runs on the session's lane after this returns (free text for an idle lane is
        handed to the dispatcher at once); a ``reply_to`` that is a
        :class:`~bot.transport.Mailbox` is settled when acting is over.
        """
        p = self.parts
        own = self.identities.get(msg.transport, ())
        if msg.sender in own:
            p.metrics.inbound.inc("ignored")
            _settle(msg)
            return FeedResult.IGNORED
        text, mentioned = strip_mention(msg.text, (p.bot_name, *own))
        session = msg.session
        self._arriving[msg.sender, session] = self._arriving.get((msg.sender, session), 0) + 1
        lane_submits = False  # the lane hands the text to the dispatcher, later
        try:
            addressed = msg.mentioned or mentioned or await self._ambient(session)
            invocation = p.registry.match(text) if addressed else None
            kind = self._kind(msg.transport, msg.sender, addressed, invocation)
            result, lane_submits = await self._decide(msg, text, kind, invocation)
            return result
        finally:
            if not lane_submits:
                self._arrived(msg.sender, session)

    async def _decide(
        self, msg: InboundMessage, text: str, kind: Kind, invocation: Invocation | None
    ) -> tuple[FeedResult, bool]:
        """Journal and act (or queue the act); also says whether the lane will submit."""
        p, session = self.parts, msg.session
        # Free text for a room with nothing queued goes to the dispatcher as soon as it is
        # journalled (a handoff that never blocks); anything else that acts takes a slot.
        inline = kind is Kind.TEXT and not p.lanes.busy(session)
        slot = p.lanes.reserve(session) if self._acts(kind) and not inline else None
        action: Action | None = None
        try:
            result = await self._journal(msg, kind, text)
            if not isinstance(result, int):
                return result, False
            self._note_ambient(session, invocation, result)
            if inline:
                self._submit(msg, text, result)
            else:
                action = self._action(msg, kind, text, invocation, result)
            decided = FeedResult.REFUSED if kind is Kind.REFUSED else FeedResult.ACCEPTED
            return decided, action is not None and kind is Kind.TEXT
        finally:
            if slot is not None and not slot.done():
                slot.set_result(action or _settler(msg))
            elif slot is None:
                _settle(msg)

    def typing(self, session: Session, sender: str, seconds: float) -> None:
        """Pass a typing signal to the dispatcher, unless it is the bot's own (I2).

        While a message of ``sender`` in ``session`` is still on its way to the dispatcher
        (being journalled), the signal waits for it: the platform sent it after that
        message, so the message must not end the typing it announces.
        """
        if self.parts.typing is None or sender in self.identities.get(session.transport, ()):
            return
        if (sender, session) in self._arriving:
            self._typing_after[sender, session] = seconds
        else:
            self.parts.typing(session, sender, seconds)

    def _arrived(self, sender: str, session: Session) -> None:
        """A message of ``sender`` reached the dispatcher (or needs not): pass on the typing
        signal that waited for it."""
        left = self._arriving.pop((sender, session), 1) - 1
        if left:
            self._arriving[sender, session] = left
            return
        seconds = self._typing_after.pop((sender, session), None)
        if seconds is not None and self.parts.typing is not None:
            self.parts.typing(session, sender, seconds)

    def _kind(
        self, transport: str, sender: str, addressed: bool, invocation: Invocation | None
    ) -> Kind:
        if not addressed:
            return Kind.IGNORED
        if not self.parts.access.of(transport).allows(sender):
            return Kind.REFUSED
        return Kind.COMMAND if invocation else Kind.TEXT

    def _acts(self, kind: Kind) -> bool:
        """Whether a message of ``kind`` has anything done for it after intake."""
        if kind is Kind.REFUSED:
            return self.parts.strangers.reply_to_strangers
        return kind in (Kind.COMMAND, Kind.TEXT)

    def _submit(self, msg: InboundMessage, text: str, journal_id: int) -> None:
        self.parts.submit(msg.session, QueuedText(msg.sender, text, journal_id, msg.ts))

    async def _journal(self, msg: InboundMessage, kind: Kind, text: str) -> int | FeedResult:
        """The journal id of ``msg``, or what intake says when there is nothing to act on."""
        p = self.parts
        recorded = await p.journal.record(msg, kind, text)
        if recorded is None:
            p.metrics.inbound.inc("deduped")
            return FeedResult.DUPLICATE
        journal_id, entry = recorded
        crash_point("after-journal")
        if self._fed_before_replay is not None:
            self._fed_before_replay.add(journal_id)
        if p.journalled is not None and kind is Kind.TEXT:
            p.journalled(msg.session, journal_id)
        if entry is not None:
            p.feed.publish(msg.session, entry)
        if kind is Kind.IGNORED:
            p.metrics.inbound.inc("ignored")
            return FeedResult.IGNORED
        p.metrics.inbound.inc("refused" if kind is Kind.REFUSED else "accepted")
        return journal_id

    def _action(
        self,
        msg: InboundMessage,
        kind: Kind,
        text: str,
        invocation: Invocation | None,
        journal_id: int,
    ) -> Action:
        """What the lane does for a journalled message; it settles the message's mailbox."""

        async def act() -> None:
            try:
                if kind is Kind.REFUSED:
                    await self._refuse(msg)
                elif invocation is not None:
                    await self._command(msg, invocation, journal_id)
                else:
                    self._submit(msg, text, journal_id)
            finally:
                if kind is Kind.TEXT:
                    self._arrived(msg.sender, msg.session)
                self._forget_ambient(msg.session, journal_id)
                _settle(msg)

        return act

    async def _command(self, msg: InboundMessage, invocation: Invocation, journal_id: int) -> None:
        p = self.parts
        admin = p.access.of(msg.transport).is_admin(msg.sender)
        reply = await p.registry.run(invocation, CommandContext(msg.session, msg.sender, admin))
        await p.journal.mark([journal_id], State.DONE)
        if reply.text:
            reply = dataclasses.replace(
                reply,
                key=f"c{journal_id}",
                reply_to=msg.reply_to,
                ephemeral=reply.ephemeral or msg.ephemeral_ok,
            )
            await p.send(msg.session, reply)

    async def _refuse(self, msg: InboundMessage) -> None:
        p = self.parts
        if await p.journal.first_refusal_today(msg.transport, msg.sender):
            refusal = Reply(REFUSAL, ephemeral=msg.ephemeral_ok, reply_to=msg.reply_to)
            await p.send(msg.session, refusal)

    async def _ambient(self, session: Session) -> bool:
        """The room's ``ambient`` setting as of this message: the rooms table, unless an
        ``ambient`` command queued before it on the lane has yet to run."""
        queued = self._ambient_queued.get(session)
        return queued[0] if queued is not None else await self.parts.rooms.ambient(session)

    def _note_ambient(self, session: Session, invocation: Invocation | None, id_: int) -> None:
        mode = _ambient_mode(invocation)
        if mode is not None:
            self._ambient_queued[session] = (mode, id_)

    def _forget_ambient(self, session: Session, journal_id: int) -> None:
        """Once the last queued ``ambient`` ran, the rooms table is the truth again."""
        queued = self._ambient_queued.get(session)
        if queued is not None and queued[1] == journal_id:
            del self._ambient_queued[session]

    async def replay(
        self, kinds: Container[Kind] = (Kind.TEXT, Kind.COMMAND), leave: Container[str] = ()
    ) -> int:
        """Re-dispatch what a crash left unanswered (D6); returns how many messages.

        Rooms whose turn had already started are told the answer was interrupted; an
        interrupted command is reported, not re-run (it may have taken effect). ``kinds``:
        which messages (on PostgreSQL free text is replayed room by room under its lease).
        ``leave``: live daemons (their keys) whose commands may still be running there.
        """
        pending = await self.parts.journal.pending()
        fed, self._fed_before_replay = self._fed_before_replay or set(), None
        count = await self.replay_entries(
            [p for p in pending if p.id not in fed and p.kind in kinds and p.node not in leave]
        )
        if count:
            log.info("replayed %d unanswered messages after a restart", count)
        return count

    async def replay_entries(self, pending: Sequence[Pending], submit: Submit | None = None) -> int:
        """Replay these unanswered journal rows as :meth:`replay` does, handing free text to
        ``submit`` (default: the dispatcher's). Also a room taken over from a node that died."""
        p = self.parts
        submit = submit or p.submit
        told: set[str] = set()
        interrupted: set[int] = set()
        for entry in pending:
            session = session_key(entry.transport, entry.room)
            if entry.kind is Kind.COMMAND:
                await p.journal.mark([entry.id], State.DONE)
                await p.send(session, Reply(COMMAND_INTERRUPTED.format(text=entry.text)))
                continue
            if entry.turn_id is not None and entry.turn_id not in interrupted:
                interrupted.add(entry.turn_id)  # told once per turn, then closed: never again
                if session not in told:
                    told.add(session)
                    await p.send(session, Reply(INTERRUPTED, key=f"r{entry.turn_id}"))
            submit(session, QueuedText(entry.sender, entry.text, entry.id))
        if interrupted:
            await p.journal.close_interrupted(interrupted)
        return len(pending)


def _ambient_mode(invocation: Invocation | None) -> bool | None:
    """What a recognised ``ambient on|off`` will set, or None for any other message."""
    if invocation is None or invocation.command.name != "ambient" or len(invocation.words) != 1:
        return None
    word = invocation.words[0].lower()
    return True if word == "on" else False if word == "off" else None


def _settle(msg: InboundMessage) -> None:
    """Tell a :class:`~bot.transport.Mailbox` ``reply_to`` that acting is over. (``getattr``
    asks what ``isinstance`` on the protocol would, without walking it on every message.)"""
    settle = getattr(msg.reply_to, "settle", None)
    if settle is not None:
        settle()


def _settler(msg: InboundMessage) -> Action:
    async def settle() -> None:
        _settle(msg)

    return settle
