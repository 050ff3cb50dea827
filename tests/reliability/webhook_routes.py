"""A transport's webhook route served in-process for R9/R12 tests, and fuzzing strategies.

The route runs on a real TCP socket from a background loop (see
:class:`~tests.fakes.threaded.ThreadedServer`), so hypothesis tests drive it with a plain
synchronous httpx client. The sink records what reached ingress.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bot.messages import InboundMessage
from bot.metrics import Metrics
from bot.transport import FeedResult
from tests.fakes.threaded import ThreadedServer

NOW = 1_800_000_000
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class RecordingSink:
    """Ingress stand-in: records every message; ``answer`` may reply to its handle."""

    def __init__(self, answer: Callable[[InboundMessage], object] | None = None) -> None:
        self.messages: list[InboundMessage] = []
        self.answer = answer

    async def feed(self, msg: InboundMessage) -> FeedResult:
        if any(m.event_id == msg.event_id for m in self.messages):
            return FeedResult.DUPLICATE
        self.messages.append(msg)
        if self.answer is not None:
            self.answer(msg)
        return FeedResult.ACCEPTED


class Route(ThreadedServer, abc.ABC):
    """Subclasses add their route to ``self.app`` in :meth:`mount`; it runs on this loop."""

    path = ""

    def __init__(self) -> None:
        super().__init__("webhook-route")
        self.sink = RecordingSink()
        self.metrics = Metrics()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.mount()

    @property
    def endpoint(self) -> str:
        return self.url + self.path

    @abc.abstractmethod
    def mount(self) -> None:
        """Add the route under test to ``self.app``."""

    def hand_in(self, msg: InboundMessage) -> asyncio.Task[FeedResult]:
        task = asyncio.ensure_future(self.sink.feed(msg))
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def closing(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def header_bytes(raw: bytes) -> bytes:
    """What HTTP lets a header value hold: visible ASCII, spaces inside, and obs-text."""
    return bytes(b for b in raw if b == 0x20 or 0x21 <= b <= 0x7E or b >= 0x80).strip()


timestamps = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(301, 10**11).flatmap(lambda d: st.sampled_from([str(NOW - d), str(NOW + d)])),
    st.sampled_from(["", "1e9", "0x6b49d200", "１８００００００００", "+1800000000", "nan", " 18"]),
    st.text(max_size=24),
).map(lambda s: s.encode("utf-8", "surrogatepass"))
hex_text = st.text(alphabet="0123456789abcdefABCDEF", max_size=160)
signatures = st.one_of(
    st.binary(max_size=200),
    hex_text.map(str.encode),
    hex_text.map(lambda h: f"sha256={h}".encode()),
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
