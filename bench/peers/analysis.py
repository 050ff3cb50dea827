"""The figures of one workload run, from what was sent, what the LLM saw and what came back.

Pure logic (no I/O), covered by tests/unit/test_peers_analysis.py. Every benchmark message
carries a tag ``<room>m<k>`` (``w3x1r17m2``: workload 3, repetition 1, room 17, message 2)
that survives each peer's prompt building, so the fake LLM can tell which messages a call
carried and for which room. Times are seconds on one clock (the bench's event loop).

Figures, per system and workload:

* ``calls_per_room``: LLM calls whose last user message is the room's (mean over rooms; the
  burst of W1 and the room of W2 are one room), ``calls_max`` the worst room;
* ``lost``: messages no LLM call ever carried;
* ``first_answer_s`` / ``last_answer_s``: from a room's last message to the first answer that
  came after it, and to the last answer (median over rooms for the first, the worst room for
  the last); ``unanswered_rooms`` counts rooms with no answer after their last message;
* ``max_concurrent``: most LLM calls open at the same instant;
* ``answers_per_room``: answers (texts from the LLM) the room got; ``notices_per_room``: the
  peer's other messages to the room ("queued", "interrupting", tips);
* ``other_calls``: calls that carried no benchmark message (a peer's own housekeeping);
  ``cancelled_calls``: calls whose client hung up before the answer (an interrupted turn).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TAG = re.compile(r"\b(w\d+x\d+r\d+)m(\d+)\b")


@dataclass(frozen=True, slots=True)
class Tag:
    room: str
    k: int

    @property
    def tag(self) -> str:
        return f"{self.room}m{self.k}"


def tags_in(text: str) -> list[Tag]:
    """The message tags in ``text``, in order."""
    return [Tag(m.group(1), int(m.group(2))) for m in TAG.finditer(text)]


def room_name(workload: int, rep: int, room: int) -> str:
    return f"w{workload}x{rep}r{room}"


@dataclass(slots=True)
class Call:
    """One request to the fake LLM."""

    n: int
    room: str | None
    tags: frozenset[str]
    start: float
    end: float | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    room: str
    tag: str
    at: float


@dataclass(frozen=True, slots=True)
class Answer:
    room: str
    at: float


@dataclass(slots=True)
class Run:
    """Everything one workload run recorded."""

    sent: list[Sent] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    notices: list[Answer] = field(default_factory=list)


def max_concurrent(calls: Iterable[Call], until: float) -> int:
    """Most calls open at one instant; a call never ended counts as open until ``until``.

    A call ending at the very instant another starts does not overlap it.
    """
    events: list[tuple[float, int]] = []
    for call in calls:
        events.append((call.start, 1))
        events.append((call.end if call.end is not None else until, -1))
    events.sort()  # at equal times -1 sorts before +1
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarise(run: Run) -> dict[str, Any]:
    """The figures of one run (see the module docstring)."""
    rooms = sorted({s.room for s in run.sent})
    last_sent = {room: max(s.at for s in run.sent if s.room == room) for room in rooms}
    ours = [c for c in run.calls if c.room in last_sent]
    per_room = [sum(1 for c in ours if c.room == room) for room in rooms]
    seen: set[str] = set()
    for call in run.calls:
        seen.update(call.tags)
    firsts: list[float] = []
    lasts: list[float] = []
    unanswered = 0
    for room in rooms:
        after = sorted(a.at for a in run.answers if a.room == room and a.at >= last_sent[room])
        if not after:
            unanswered += 1
            continue
        firsts.append(after[0] - last_sent[room])
        lasts.append(after[-1] - last_sent[room])
    until = max([c.end or c.start for c in run.calls] + [a.at for a in run.answers], default=0.0)
    answers_in_rooms = sum(1 for a in run.answers if a.room in last_sent)
    return {
        "rooms": len(rooms),
        "messages": len(run.sent),
        "llm_calls": len(ours),
        "calls_per_room": _round(sum(per_room) / len(rooms) if rooms else None, 2),
        "calls_max": max(per_room, default=0),
        "lost": sum(1 for s in run.sent if s.tag not in seen),
        "answers_per_room": _round(answers_in_rooms / len(rooms) if rooms else None, 2),
        "notices_per_room": _round(
            sum(1 for n in run.notices if n.room in last_sent) / len(rooms) if rooms else None, 2
        ),
        "first_answer_s": _round(_median(firsts)),
        "last_answer_s": _round(max(lasts) if lasts else None),
        "unanswered_rooms": unanswered,
        "max_concurrent": max_concurrent(run.calls, until),
        "other_calls": sum(1 for c in run.calls if c.room is None),
        "cancelled_calls": sum(1 for c in run.calls if c.cancelled),
    }


FIGURES = (
    "calls_per_room",
    "lost",
    "answers_per_room",
    "first_answer_s",
    "last_answer_s",
    "max_concurrent",
)


def median_figures(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric figure over repetitions (``None`` values left out).

    A yes/no figure (``timed_out``) is yes when any repetition says yes.
    """
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key in runs[0]:
        if isinstance(runs[0][key], bool):
            out[key] = any(r.get(key) for r in runs)
            continue
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        out[key] = _round(statistics.median(values)) if values else None
    return out


def table(rows: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """A Markdown table: one row per (system, workload) with the figures that matter."""
    head = (
        "| system | workload | LLM calls per burst | lost | answers | last msg → first answer (s) "
        "| last msg → last answer (s) | max concurrent LLM calls |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for system, workload, figures in rows:
        if "error" in figures:
            lines.append(f"| {system} | {workload} | {figures['error']} | | | | | |")
            continue
        cells = [_cell(figures.get(key)) for key in FIGURES]
        lines.append(f"| {system} | {workload} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
