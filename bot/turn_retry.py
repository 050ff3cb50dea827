"""A turn the store could not record is not dropped (R18): it runs again once the store
takes writes, and after ``attempts`` tries the room is told and its messages stay pending
(they are answered after a restart)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.messages import QueuedText, Reply
from bot.store_health import StoreHealth
from config.errors import StoreError

log = logging.getLogger("musher.turns")

RunTurn = Callable[[str, Sequence[QueuedText]], Awaitable[None]]
Tell = Callable[[str, Reply], Awaitable[None]]

RETRYING = "⚠️ musher could not save while answering ({reason}); answering again."
GAVE_UP = (
    "⚠️ musher could not answer: saving failed {attempts} times ({reason})."
    " Your messages are kept and will be answered after musher restarts."
)


class TurnRetry:
    """Wraps the turn runner for the dispatcher: still one turn at a time per room, since
    the waiting happens inside the room's turn (``stop`` and shutdown cancel it)."""

    def __init__(
        self,
        run_turn: RunTurn,
        health: StoreHealth,
        probe: Callable[[], Awaitable[None]],
        tell: Tell,
        *,
        attempts: int = 3,
        first_delay: float = 0.5,
    ) -> None:
        self._run_turn = run_turn
        self._health = health
        self._probe = probe
        self._tell = tell
        self._attempts = attempts
        self._first_delay = first_delay

    async def __call__(self, session: str, batch: Sequence[QueuedText]) -> None:
        """Run the turn; on a store failure wait until writes work, say so, run it again.

        Cancelling leaves the messages pending, as a cancelled turn does.
        """
        for attempt in range(1, self._attempts + 1):
            try:
                await self._run_turn(session, batch)
                return
            except StoreError as err:
                reason = str(err)
                log.error("turn in %s not saved (try %d): %s", session, attempt, reason)
            await self._health.recovered(self._probe, first_delay=self._first_delay)
            last = attempt == self._attempts
            text = GAVE_UP if last else RETRYING
            await self._say(session, text.format(reason=reason, attempts=attempt))

    async def _say(self, session: str, text: str) -> None:
        try:
            await self._tell(session, Reply(text))
        except StoreError as err:
            log.error("could not tell %s: %s (%s)", session, text, err)
