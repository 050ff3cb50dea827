"""The workloads, played against one started system with the shared fake LLM.

* W1: a burst of 5 messages, 200 ms apart, in one room;
* W2: one message, then 3 more while the LLM answers it (sent 0.3, 0.6 and 0.9 s after the
  room's first LLM call began, whenever that is: the window, a queue or nothing before it);
* W3: 50 rooms × 3 messages, all sent at once.

Each message is ``<tag> please reply`` (the tag names workload, repetition, room and
message, see :mod:`bench.peers.analysis`). A run ends once nothing has happened for
``SETTLE_S`` (no LLM call open, no call begun or ended, no message in either direction):
longer than any coalescing window or queue delay of the systems measured, so a late
follow-up turn still counts. A run that is still busy after ``LIMIT_S`` is cut short and
says so (``timed_out``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.analysis import Answer, Call, Run, Sent, room_name, summarise
from bench.peers.llm import FakeLlm
from bench.peers.systems import System

SETTLE_S = 4.0
LIMIT_S = 180.0
W2_DELAYS_S = (0.3, 0.3, 0.3)
WORKLOADS = {1: "W1 5-message burst", 2: "W2 3 messages during a turn", 3: "W3 50 rooms × 3"}


def is_answer(text: str) -> bool:
    """An answer carries the fake LLM's text; anything else a system sends is a notice."""
    return text.startswith("ANSWER ")


class Player:
    """Plays workloads on one system, recording sends, LLM calls and what came back."""

    def __init__(self, llm: FakeLlm) -> None:
        self.llm = llm
        self.run = Run()
        self.rooms: set[str] = set()
        self._activity = 0.0
        self._first_call: dict[str, asyncio.Event] = {}
        llm.on_call = self._on_call

    def on_message(self, room: str, text: str) -> None:
        """Every message a system sends to a room (the system's ``on_message``)."""
        now = self._now()
        self._activity = now
        if room not in self.rooms:
            return
        target = self.run.answers if is_answer(text) else self.run.notices
        target.append(Answer(room, now))

    def _on_call(self, call: Call) -> None:
        self._activity = call.start
        if call.room is not None and call.room in self._first_call:
            self._first_call[call.room].set()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _send(self, system: System, room: str, k: int) -> None:
        tag = f"{room}m{k}"
        self.run.sent.append(Sent(room, tag, self._now()))
        self._activity = self._now()
        await system.send(room, f"{tag} please reply")

    async def play(self, system: System, workload: int, rep: int) -> dict[str, Any]:
        """One run of ``workload``; its figures (:func:`summarise`) plus ``timed_out``."""
        count = 50 if workload == 3 else 1
        rooms = [room_name(workload, rep, i) for i in range(count)]
        await system.open_rooms(rooms)
        await self._settle()
        self.llm.clear()
        self.run = Run()
        self.rooms = set(rooms)
        self._first_call = {room: asyncio.Event() for room in rooms}
        if workload == 1:
            for k in range(1, 6):
                await self._send(system, rooms[0], k)
                await asyncio.sleep(0.2)
        elif workload == 2:
            await self._send(system, rooms[0], 1)
            await asyncio.wait_for(self._first_call[rooms[0]].wait(), LIMIT_S)
            for k, delay in enumerate(W2_DELAYS_S, start=2):
                await asyncio.sleep(delay)
                await self._send(system, rooms[0], k)
        else:

            async def burst(room: str) -> None:
                for k in range(1, 4):
                    await self._send(system, room, k)

            await asyncio.gather(*(burst(room) for room in rooms))
        timed_out = not await self._settle()
        self.run.calls = list(self.llm.calls)
        return summarise(self.run) | {"timed_out": timed_out}

    async def warm_up(self, system: System) -> None:
        """One message in a room of its own, answered, so start-up costs stay out of runs."""
        room = room_name(0, 0, 0)
        await system.open_rooms([room])
        self.rooms = {room}
        self.run = Run()
        await self._send(system, room, 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIMIT_S
        while not self.run.answers:
            if loop.time() > deadline:
                raise RuntimeError(f"{system.name} did not answer the warm-up message")
            await asyncio.sleep(0.1)
        await self._settle()

    async def _settle(self) -> bool:
        """Wait until nothing happened for ``SETTLE_S``; False if that took over ``LIMIT_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIMIT_S
        while True:
            now = loop.time()
            if self.llm.in_flight == 0 and now - self._last_activity() >= SETTLE_S:
                return True
            if now > deadline:
                return False
            await asyncio.sleep(0.1)

    def _last_activity(self) -> float:
        ends = [c.end for c in self.llm.calls if c.end is not None]
        return max([self._activity, *ends])
