"""Busy mode ``steer`` (D3): messages that arrive during a turn are offered to that turn.

The dispatcher opens an :class:`Inbox` for each turn it runs in ``steer`` mode and registers
it in :class:`Inboxes`; the turn runner finds it there and hands it to the provider, which
takes what waits at a point where the model can still read it (a tool boundary, or the
claude CLI's open stdin). What the turn never takes runs as one follow-up turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.messages import QueuedText
from bot.prompt import build_prompt

SKIPPED = "Skipped: a newer message from the room arrived before this ran; read it first."
"""The result a tool call gets when a steer supersedes it before it started."""


class Inbox:
    """The messages queued for one running turn, until the turn closes it.

    ``take`` moves everything queued into the turn (the dispatcher then counts it as part of
    the turn's batch: ``stop`` drops it with the turn, and no follow-up repeats it). After
    :meth:`close`, or once the turn has ended, nothing more is taken and what arrives waits
    for the follow-up turn.
    """

    __slots__ = ("_arrived", "_peek", "_take", "closed")

    def __init__(
        self,
        take: Callable[[], Sequence[QueuedText]],
        peek: Callable[[], Sequence[QueuedText]],
    ) -> None:
        self._take = take
        self._peek = peek
        self._arrived = asyncio.Event()
        self.closed = False

    def offer(self) -> None:
        """Called by the dispatcher when a message was queued for the turn."""
        if not self.closed:
            self._arrived.set()

    def peek(self) -> tuple[QueuedText, ...]:
        """What :meth:`take` would return now, left in place."""
        return () if self.closed else tuple(self._peek())

    def take(self) -> tuple[QueuedText, ...]:
        """Everything queued so far, in arrival order (empty once closed). Never blocks."""
        self._arrived.clear()
        if self.closed:
            return ()
        return tuple(self._take())

    async def wait(self) -> None:
        """Return once something is queued (at once if something already is)."""
        await self._arrived.wait()

    def close(self) -> None:
        """The turn takes nothing more; later messages make the follow-up turn."""
        self.closed = True
        self._arrived.clear()


class Inboxes:
    """The running turns' inboxes by session: the dispatcher writes, the turn runner reads."""

    def __init__(self) -> None:
        self._open: dict[str, Inbox] = {}

    def open(
        self,
        session: str,
        take: Callable[[], Sequence[QueuedText]],
        peek: Callable[[], Sequence[QueuedText]],
    ) -> Inbox:
        inbox = self._open[session] = Inbox(take, peek)
        return inbox

    def get(self, session: str) -> Inbox | None:
        """The running turn's inbox, or None (not ``steer`` mode, or no turn running)."""
        return self._open.get(session)

    def drop(self, session: str, inbox: Inbox) -> None:
        inbox.close()
        if self._open.get(session) is inbox:
            del self._open[session]

    def __len__(self) -> int:
        return len(self._open)


class JoinTurn(Protocol):
    """Where a taken message is recorded as part of the running turn (the journal)."""

    async def join_turn(self, turn_id: int, ids: Sequence[int]) -> None: ...


class TurnSteer:
    """A turn's side of its inbox: the :class:`~bot.llm.base.Steer` a provider is given.

    What it takes is recorded in the journal as part of the turn before the provider sees
    it (so a crash replays it with the turn, D6), and its journal ids are added to ``ids``
    (so the turn's end marks them answered). ``accept`` may refuse what waits, which then
    stays for the follow-up turn (a non-admin's message never joins an admin's turn, L4).
    """

    def __init__(
        self,
        inbox: Inbox,
        journal: JoinTurn,
        turn_id: int,
        ids: list[int],
        accept: Callable[[QueuedText], bool],
    ) -> None:
        self._inbox = inbox
        self._journal = journal
        self._turn_id = turn_id
        self._ids = ids
        self._accept = accept

    async def take(self) -> str | None:
        if self._inbox.closed or not all(map(self._accept, self._inbox.peek())):
            return None
        taken = self._inbox.take()
        if not taken:
            return None
        new = [i for m in taken for i in m.journal_ids]
        self._ids.extend(new)
        await self._journal.join_turn(self._turn_id, new)
        return build_prompt(taken)

    async def wait(self) -> None:
        await self._inbox.wait()

    def close(self) -> None:
        self._inbox.close()
