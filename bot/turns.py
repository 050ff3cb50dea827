"""Run one LLM turn for a batch: record it, stream the answer by paragraph, record the end.

Guarantees (D6, L3, L6): the turn is in the journal before the provider is called; every
paragraph is sent as soon as it is complete; a failure or timeout is said in the room; a
cancelled turn (``stop``, interrupt, shutdown) leaves its messages for the dispatcher to
settle and re-raises, so ``stop`` can drop them and a shutdown can park them for replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.llm.base import Done, Failed, TextDelta, TurnRequest, Usage
from bot.messages import QueuedText, Reply
from bot.paragraphs import ParagraphBuffer
from bot.prompt import build_prompt

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("musher.turns")


class TurnRunner:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def run(self, session: str, batch: Sequence[QueuedText]) -> None:
        """Answer ``batch`` in ``session``. Cancelling leaves the messages unanswered."""
        s = self.services
        ids = [i for m in batch for i in m.journal_ids]
        turn_id = await s.journal.start_turn(session, ids)
        started = time.monotonic()
        await s.outbox.typing(session, True)
        outcome = "cancelled"
        try:
            outcome = await self._stream(session, batch)
        finally:
            await asyncio.shield(s.outbox.typing(session, False))
            s.metrics.turns.inc(outcome)
            s.metrics.turn_seconds.observe(time.monotonic() - started)
        await s.journal.finish_turn(turn_id, ids, outcome)

    async def _stream(self, session: str, batch: Sequence[QueuedText]) -> str:
        s = self.services
        request = TurnRequest(session=session, prompt=build_prompt(batch), batch=tuple(batch))
        paragraphs = ParagraphBuffer()
        sent_any = False
        timeout = s.settings.llm.turn_timeout_s
        try:
            async with asyncio.timeout(timeout):
                async for event in s.provider.run(request, asyncio.Event()):
                    match event:
                        case TextDelta(text):
                            for paragraph in paragraphs.feed(text):
                                await s.outbox.send(session, Reply(paragraph))
                                sent_any = True
                        case Done(text):
                            sent_any = await self._flush(session, paragraphs) or sent_any
                            if text and not sent_any:
                                await s.outbox.send(session, Reply(text))
                        case Failed(message):
                            await self._flush(session, paragraphs)
                            await s.outbox.send(session, Reply(f"⚠️ {message}"))
                            return "error"
                        case Usage():
                            pass
            await self._flush(session, paragraphs)
            return "ok"
        except TimeoutError:
            await s.outbox.send(
                session, Reply(f"⚠️ The answer took longer than {timeout:g} s and was stopped.")
            )
            return "timeout"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("turn failed in %s", session)
            await s.outbox.send(session, Reply(f"⚠️ The answer failed: {exc}"))
            return "error"

    async def _flush(self, session: str, paragraphs: ParagraphBuffer) -> bool:
        rest = paragraphs.flush()
        if rest:
            await self.services.outbox.send(session, Reply(rest))
        return bool(rest)
