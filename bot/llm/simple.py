"""Providers that need no model: ``echo`` (tests and demos) and ``none`` (no LLM configured)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from bot.llm.base import Done, TextDelta, TurnEvent, TurnRequest

NO_LLM_TEXT = (
    "No LLM is configured, so I can't answer free text. Commands still work: try `help`. "
    "To talk to a model, set `[llm] provider` in bot.toml."
)


class EchoProvider:
    """Answers each turn with exactly one paragraph: ``echo: `` + the texts joined by `` | ``.

    ``delay_s`` makes every turn take that long (to exercise queueing and ``stop``).
    """

    name = "echo"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        yield TextDelta("echo: " + " | ".join(m.text for m in request.batch))
        yield Done()

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


class NoneProvider:
    """Explains that no LLM is configured and that commands still work."""

    name = "none"

    async def run(
        self, request: TurnRequest, cancel: asyncio.Event
    ) -> AsyncGenerator[TurnEvent, None]:
        yield Done(NO_LLM_TEXT)

    async def reset(self, session: str) -> None:
        return None

    async def aclose(self) -> None:
        return None
