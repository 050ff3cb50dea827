"""``MUSHER_CRASH_AT=<label>``: SIGKILL the process at a named point, for crash tests.

Unset (always, outside tests), :func:`crash_point` is one comparison: the variable is read
once, when this module is imported (a test sets it in the environment of the daemon it
starts). The labels, in
the order a message meets them (README, "Crash safety"):

* ``after-journal``: an inbound message is durably journalled, not yet acknowledged or acted
  on (I1: the platform redelivers or the daemon replays it).
* ``before-turn-start``: a batch is closed, its turn not yet recorded (D6: replayed without
  a notice, nothing was under way).
* ``after-turn-start``: the turn is recorded, the LLM not yet called (D6: replayed once,
  with one "restarted while answering" notice).
* ``timer-firing``: a due timer was re-checked, its move and its removal not yet committed
  (R7: it fires once after the restart, within the grace period).
* ``mid-op-commit``: an op and its effects are written inside the transaction, the commit
  not yet done (S4/R4: the op is absent after the restart, never half-applied).
* ``merge-before-ff``: a merge's squash commit passed the gates in its temporary worktree,
  the base branch not yet moved (A3: the worktree is swept, the merge runs again).
* ``merge-after-ff``: the base branch was fast-forwarded, the item not yet Done (A3: the
  landed commit is recognised by its trailer and recorded, never merged twice).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import TypeVar

ENV = "MUSHER_CRASH_AT"
LABELS = frozenset(
    {
        "after-journal",
        "before-turn-start",
        "after-turn-start",
        "timer-firing",
        "mid-op-commit",
        "merge-before-ff",
        "merge-after-ff",
    }
)

log = logging.getLogger("musher.crash")
_ARMED = os.environ.get(ENV)
"""The label to die at, if any (read at import: ``os.environ`` lookups cost on hot paths)."""
T = TypeVar("T")
A = TypeVar("A")


def crash_point(label: str) -> None:
    """SIGKILL this process now if ``$MUSHER_CRASH_AT`` names ``label``; else nothing."""
    if _ARMED is not None and label == _ARMED:
        log.warning("MUSHER_CRASH_AT=%s: killing the process", label)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def crash_after(job: Callable[[A], T], label: str) -> Callable[[A], T]:
    """``job``, then :func:`crash_point` ``label`` (a database job: written, not committed)."""

    def run(arg: A) -> T:
        result = job(arg)
        crash_point(label)
        return result

    return run
