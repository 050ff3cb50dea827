"""One serial lane per session: acting on messages in journal order, after intake returned (I1).

Ingress :meth:`~Lanes.reserve`\\ s a slot in the session's lane *before* it journals a message
(journal writes are queued in call order, so slot order is journal order), then fills the
slot with what to do — run a command and reply, hand text to the dispatcher, refuse — or with
nothing, and returns: the transport acknowledges while the lane acts. A lane runs its slots
one at a time, waiting for an unfilled slot rather than skipping it, so the actions of one
room never overlap or reorder. A lane exists only while it has slots: idle rooms cost
nothing (D5).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("musher.lanes")

Action = Callable[[], Awaitable[None]]
Slot = asyncio.Future[Action | None]


class Lanes:
    """The sessions' lanes; every lane task is tracked and named ``lane:<session>``."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Slot]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def reserve(self, session: str) -> Slot:
        """A place at the end of ``session``'s lane. Must be called on the event loop.

        Fill it with ``slot.set_result(action)`` (``None``: nothing to do); the lane waits for
        it before running anything queued after it. Slots left when a lane is cancelled are
        cancelled.
        """
        slot: Slot = asyncio.get_running_loop().create_future()
        queue = self._queues.get(session)
        if queue is None:
            queue = self._queues[session] = deque()
            task = asyncio.get_running_loop().create_task(
                self._run(session, queue), name=f"lane:{session}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(slot)
        return slot

    def busy(self, session: str) -> bool:
        """Whether ``session`` has actions queued or running."""
        return session in self._queues

    def __len__(self) -> int:
        """How many sessions have a lane (each one has work queued)."""
        return len(self._queues)

    async def join(self) -> None:
        """Wait until every lane has run everything queued, including what is queued meanwhile."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self, grace_s: float) -> None:
        """Let the lanes finish for up to ``grace_s`` seconds, then cancel what is left.

        A cancelled command stays ``pending`` in the journal; the next start reports it in the
        room instead of running it again (D6).
        """
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, session: str, queue: deque[Slot]) -> None:
        try:
            while queue:
                slot = queue[0]  # only this task cancels slots (below), once it is ending
                action = slot.result() if slot.done() else await slot
                if action is not None:
                    await _act(session, action)
                queue.popleft()
        finally:
            for slot in queue:
                slot.cancel()
            if self._queues.get(session) is queue:
                del self._queues[session]


async def _act(session: str, action: Action) -> None:
    try:
        await action()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("acting on a message in %s failed", session)
