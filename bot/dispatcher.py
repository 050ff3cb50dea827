"""Per-session coalescer and serial lock: free text becomes batches, one LLM turn per room.

Event-driven: a session is a small record plus at most one clock callback while it waits; only
a running turn is an ``asyncio.Task``. Contracts D1-D3 and D5 of the design are pinned here.
Where a transport reports typing (:meth:`Dispatcher.typing`), a batch closes a short quiet
time after its last message unless one of its senders is still typing (D1).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Literal

from bot.clock import Clock, TimerHandle
from bot.messages import QueuedText
from bot.steer import Inbox, Inboxes
from config.errors import PermanentError

RunTurn = Callable[[str, Sequence[QueuedText]], Awaitable[None]]
Discard = Callable[[str, Sequence[QueuedText]], Awaitable[None]]

log = logging.getLogger("musher.dispatcher")

SUMMARY_SENDER = "musher"
SUMMARY_LIMIT = 4000
_SUMMARY_HEAD = re.compile(r"^\((\d+) earlier messages folded\) ")
_SUMMARY_TAIL = re.compile(r" … \(\+(\d+) more\)$")


class _Session:
    """One room's state. Idle: empty ``pending``, no ``task``, only the eviction timer.

    ``pending`` is the coalescing batch (``timer`` set), a closed batch waiting for a cancelled
    turn to finish (``timer`` None, ``task`` set), or the collect-mode queue of a running turn.
    ``running`` is the running turn's batch until an interrupt or a stop takes it back (in
    ``steer`` mode it grows by what the turn took from its ``inbox``). ``typing`` holds, while
    a batch coalesces, until when each of its senders is typing; ``aware`` is set once the
    transport has reported typing in this room.
    """

    __slots__ = (
        "aware",
        "evict",
        "first_at",
        "inbox",
        "last_at",
        "pending",
        "running",
        "task",
        "timer",
        "typing",
    )

    def __init__(self) -> None:
        self.pending: list[QueuedText] = []
        self.first_at = 0.0
        self.last_at = 0.0
        self.aware = False
        self.typing: dict[str, float] | None = None
        self.inbox: Inbox | None = None
        self.timer: TimerHandle | None = None
        self.evict: TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.running: tuple[QueuedText, ...] | None = None


class Dispatcher:
    """Turns each session's free-text messages into serial LLM turns.

    Guarantees: at most one turn per session runs at any time, a cancelled one counting until
    it has fully ended (D2); messages of a session reach ``run_turn`` in arrival order; a
    message is in exactly one batch unless an interrupt cancelled its turn, in which case it is
    also in the next batch; a batch closes ``coalesce_window_s`` after its last message and
    never later than ``max_wait_s`` after its first, or when the previous turn has ended if
    that is later (D1); in a room whose transport reports typing the batch closes
    ``quiet_s`` after its last message, or when no sender of it is typing any more if that
    is later, still within ``max_wait_s`` (D1); in ``collect`` mode what arrived during a
    turn runs as one follow-up the moment it ends, and in ``steer`` mode the running turn may
    take it first through its inbox (D3); no list holds more than ``queue_cap`` entries (at
    least 2), the oldest are folded into one summary entry that keeps every journal id
    (D3); a turn that raises is logged and the session carries on; idle sessions are
    dropped after ``idle_ttl_s`` (D5).
    """

    def __init__(
        self,
        *,
        run_turn: RunTurn,
        discard: Discard,
        clock: Clock,
        coalesce_window_s: float = 1.5,
        max_wait_s: float = 7.5,
        quiet_s: float = 0.3,
        busy_mode: Literal["collect", "interrupt", "steer"] = "collect",
        queue_cap: int = 50,
        idle_ttl_s: float = 600.0,
        on_batch: Callable[[int], None] | None = None,
        inboxes: Inboxes | None = None,
    ) -> None:
        if queue_cap < 2:
            raise ValueError("queue_cap must be at least 2")
        self._run_turn = run_turn
        self._discard = discard
        self._clock = clock
        self._window = coalesce_window_s
        self._max_wait = max_wait_s
        self._quiet = quiet_s
        self._interrupt = busy_mode == "interrupt"
        if inboxes is None:
            inboxes = Inboxes()
        self._inboxes = inboxes if busy_mode == "steer" else None
        self._cap = queue_cap
        self._ttl = idle_ttl_s
        self._on_batch = on_batch
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, session: str, message: QueuedText) -> None:
        """Hand one message to ``session``; never blocks. Must be called on the event loop.

        Idle: a batch opens. Coalescing: the window restarts (and the sender is no longer
        typing). Running, ``collect``: the message waits for the one follow-up turn. Running,
        ``steer``: the same, and the turn's inbox is told. Running, ``interrupt``: the turn is
        cancelled and its batch plus this message form a new batch whose window starts now.

        Raises:
            PermanentError: after :meth:`aclose`.
        """
        if self._closed:
            raise PermanentError(f"dispatcher is closed; message for {session} not dispatched")
        sess = self._sessions.get(session)
        if sess is None:
            sess = self._sessions[session] = _Session()
        _cancel(sess.evict)
        sess.evict = None
        if sess.task is not None and not self._interrupt:
            self._push(sess, message)
            if sess.inbox is not None:
                sess.inbox.offer()
            return
        now, reopen = self._clock.now(), True
        # cancel() is False once the turn has returned (its done callback still pending): then
        # its batch was answered and this message simply opens a new batch.
        if sess.task is not None and sess.running is not None and sess.task.cancel():
            sess.pending, sess.running = [*sess.running, *sess.pending], None
            sess.first_at = now
        elif not sess.pending:
            sess.first_at = now
        else:  # a closed batch waiting for a cancel to land is joined as is
            reopen = sess.timer is not None
        self._push(sess, message)
        sess.last_at = now
        if sess.typing is not None:
            sess.typing.pop(message.sender, None)
        if reopen:
            self._arm(session, sess)

    def typing(self, session: str, sender: str, seconds: float) -> None:
        """``sender`` is typing in ``session`` for up to ``seconds`` more (0: stopped).

        Marks the room as one whose transport reports typing (D1: its batches close
        ``quiet_s`` after the last message). While a batch coalesces, a sender of it who is
        typing keeps it open until ``quiet_s`` after the typing ended (a stop arriving just
        before the message it announces closes nothing), within ``max_wait_s``; a signal
        from anyone else changes nothing. A message from the sender ends their typing.
        Never blocks.
        """
        if self._closed:
            return
        sess = self._sessions.get(session)
        if sess is None:
            if seconds <= 0:
                return
            sess = self._sessions[session] = _Session()
            self._idle(session, sess)
        was_aware, sess.aware = sess.aware, True
        if sess.timer is None:
            return
        if any(m.is_from(sender) for m in sess.pending):
            tracked = sess.typing if sess.typing is not None else {}
            tracked[sender] = self._clock.now() + max(0.0, seconds)
            sess.typing = tracked
        elif was_aware:
            return
        self._arm(session, sess)

    def _arm(self, session: str, sess: _Session) -> None:
        """(Re)schedule the close of the coalescing batch at its deadline."""
        _cancel(sess.timer)
        sess.timer = self._clock.call_at(self._deadline(sess), partial(self._close, session, sess))

    def _deadline(self, sess: _Session) -> float:
        cap = sess.first_at + self._max_wait
        if not sess.aware:
            return min(sess.last_at + self._window, cap)
        typing_until = max((sess.typing or {}).values(), default=0.0)
        return min(max(sess.last_at, typing_until) + self._quiet, cap)

    async def stop(self, session: str, *, discard: bool = True) -> bool:
        """Cancel ``session``'s turn, wait for it to end, and drop everything it was holding.

        The cancelled batch, the queue and the coalescing batch go to ``discard`` (once, in
        arrival order, after the turn has finished), unless ``discard`` is False (the room's
        lease was lost: its messages stay unanswered for the next holder). Messages submitted
        while this waits are kept and run afterwards. Stopping an idle session changes
        nothing. If this call is itself cancelled while waiting, the turn still ends but
        ``discard`` is not called, so the messages stay unanswered in the journal.

        Returns:
            True if the session was held in memory, False if unknown or already evicted.
        """
        sess = self._sessions.get(session)
        if sess is None:
            return False
        task = sess.task
        unfinished = sess.running if task is not None and not task.done() else None
        dropped = [*(unfinished or ()), *sess.pending]
        sess.running, sess.pending, sess.typing = None, [], None
        _cancel(sess.timer)
        sess.timer = None
        own = task is not None and task is asyncio.current_task()
        if task is None:
            if dropped:
                self._idle(session, sess)
        elif not own:
            task.cancel()
            await asyncio.wait({task})
        if dropped and discard:
            await self._discard(session, dropped)
        if task is not None and own:  # a turn stopping itself: the cancel lands at its next await
            task.cancel()
        return True

    def busy(self, session: str) -> bool:
        """Whether a turn is running (or still finishing its cancellation) for ``session``."""
        sess = self._sessions.get(session)
        return sess is not None and sess.task is not None

    def active(self, session: str) -> bool:
        """Whether ``session`` has a turn running or messages waiting for one."""
        sess = self._sessions.get(session)
        return sess is not None and (sess.task is not None or bool(sess.pending))

    def session_count(self) -> int:
        """How many sessions are held in memory, idle ones awaiting eviction included."""
        return len(self._sessions)

    def queue_depth(self) -> int:
        """Messages waiting over all sessions: coalescing batches plus queues (folds count 1)."""
        return sum(len(sess.pending) for sess in self._sessions.values())

    async def join(self) -> None:
        """Wait until no turn is running, follow-ups included (coalescing batches wait for
        the clock)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Shut down: refuse submits, drop every timer, cancel every turn and wait for it.

        ``discard`` is not called: waiting and cancelled messages stay unanswered in the
        journal and are replayed after a restart. Idempotent.
        """
        self._closed = True
        for sess in self._sessions.values():
            _cancel(sess.timer)
            _cancel(sess.evict)
        self._sessions.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _close(self, session: str, sess: _Session) -> None:
        """Deadline callback: the batch closes; it starts now unless a cancel is still landing."""
        sess.timer, sess.typing = None, None
        if sess.task is None and sess.pending and not self._closed:
            self._launch(session, sess)

    def _launch(self, session: str, sess: _Session) -> None:
        batch = tuple(sess.pending)
        sess.pending = []
        sess.running = batch
        task = asyncio.get_running_loop().create_task(
            self._turn(session, batch), name=f"turn:{session}"
        )
        sess.task = task
        if self._inboxes is not None:
            sess.inbox = self._inboxes.open(
                session, partial(self._take, sess, task), partial(self._queued, sess, task)
            )
        self._tasks.add(task)
        task.add_done_callback(partial(self._turn_done, session, sess))
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch))
            except Exception:
                log.exception("on_batch hook failed for session %s", session)

    async def _turn(self, session: str, batch: tuple[QueuedText, ...]) -> None:
        try:
            await self._run_turn(session, batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("turn failed for session %s (%d messages)", session, len(batch))

    def _turn_done(self, session: str, sess: _Session, task: asyncio.Task[None]) -> None:
        """The turn has fully ended: run what waited (no extra window), or go idle."""
        self._tasks.discard(task)
        if sess.task is task:
            sess.task, sess.running = None, None
            if sess.inbox is not None and self._inboxes is not None:
                self._inboxes.drop(session, sess.inbox)
                sess.inbox = None
        if self._closed or sess.timer is not None:
            return
        if sess.pending:
            self._launch(session, sess)
        else:
            self._idle(session, sess)

    def _idle(self, session: str, sess: _Session) -> None:
        _cancel(sess.evict)
        when = self._clock.now() + self._ttl
        sess.evict = self._clock.call_at(when, partial(self._evict, session, sess))

    def _evict(self, session: str, sess: _Session) -> None:
        sess.evict = None
        idle = sess.task is None and not sess.pending and sess.timer is None
        if idle and self._sessions.get(session) is sess:
            del self._sessions[session]

    def _queued(self, sess: _Session, task: asyncio.Task[None]) -> list[QueuedText]:
        """What waits for ``task``'s turn to take it (nothing once it was stopped)."""
        if sess.task is not task or sess.running is None or sess.timer is not None:
            return []
        return sess.pending

    def _take(self, sess: _Session, task: asyncio.Task[None]) -> list[QueuedText]:
        """A steering turn takes what waits for it: from now on it is part of that turn."""
        taken = list(self._queued(sess, task))
        if not taken or sess.running is None:
            return []
        sess.pending = []
        sess.running = (*sess.running, *taken)
        return taken

    def _push(self, sess: _Session, message: QueuedText) -> None:
        sess.pending.append(message)
        self._cap_pending(sess)

    def _cap_pending(self, sess: _Session) -> None:
        """Keep ``pending`` at ``queue_cap`` entries by folding the oldest into one summary."""
        excess = len(sess.pending) - self._cap + 1
        if excess > 1:
            sess.pending[:excess] = [fold(sess.pending[:excess])]


def fold(items: Sequence[QueuedText]) -> QueuedText:
    """Fold ``items`` (oldest first) into one summary entry that keeps every journal id.

    The text reads ``(N earlier messages folded) alice: t1 / bob: t2``; folding a summary again
    extends it. Past ``SUMMARY_LIMIT`` characters the rest is counted in a ``… (+K more)``
    marker rather than dropped silently (their journal ids are still carried).
    """
    body, count, omitted = "", 0, 0
    for item in items:
        text, n, more = _summary_parts(item)
        count += n
        if omitted or (body and len(body) + 3 + len(text) > SUMMARY_LIMIT):
            omitted += n  # once anything is left out, later ones are too: order stays true
        else:
            body = f"{body} / {text}" if body else text
            omitted += more
    text = f"({count} earlier messages folded) {body}"
    if omitted:
        text += f" … (+{omitted} more)"
    ids = [i for item in items for i in item.journal_ids]
    senders = {s: None for item in items for s in (item.sender, *item.folded_from)}
    senders.pop(SUMMARY_SENDER, None)
    return QueuedText(SUMMARY_SENDER, text, ids[0], items[0].ts, tuple(ids[1:]), tuple(senders))


def _summary_parts(item: QueuedText) -> tuple[str, int, int]:
    """``(shown text, messages it stands for, of those not shown)`` of one entry."""
    head = _SUMMARY_HEAD.match(item.text) if item.sender == SUMMARY_SENDER else None
    if head is None:
        return f"{item.sender}: {item.text}", 1, 0
    body = item.text[head.end() :]
    tail = _SUMMARY_TAIL.search(body)
    if tail is None:
        return body, int(head[1]), 0
    return body[: tail.start()], int(head[1]), int(tail[1])


def _cancel(handle: TimerHandle | None) -> None:
    if handle is not None:
        handle.cancel()
