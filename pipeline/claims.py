"""Once cluster-wide (K2): guards a write job runs first, so that of several daemons acting
on the same change, exactly one commits and the others write nothing.

Each guard runs inside the job's transaction (see :meth:`pipeline.store.OpStore.append_many`'s
``check``) and raises a :class:`~pipeline.errors.PipelineError` to roll the job back:

- :func:`unchanged` — compare-and-set on an item: the ``items`` row must still be the one
  the caller read (same stage, same ``updated_at``, which every op on the item sets). The
  statement is an ``UPDATE`` that changes nothing, so on PostgreSQL it takes the row lock,
  and a concurrent writer of the same item waits for this commit and then finds the row
  changed (READ COMMITTED re-checks the ``WHERE`` against the committed row). Every engine
  change goes through it, so a dependency promotion that two daemons both start is written
  once: the second's ``start`` finds the item no longer in the state it read.
- :func:`claim_timer` — a firing timer claims its row (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL): the daemon that gets it moves the item and deletes the row in the same
  transaction; another daemon firing the same timer meanwhile finds no row and does nothing
  (not even a report), and so does any daemon after the commit.

On SQLite (one daemon) :func:`unchanged` does nothing (the engine's per-project lock and
the one writer already serialise every read-check-write) and :func:`claim_timer` is one
keyed read.
"""

from __future__ import annotations

from pipeline.errors import PipelineError
from pipeline.materialise import item_row
from pipeline.model import Item
from pipeline.storage import Conn, claim, shared

_UNCHANGED = (
    "UPDATE items SET updated_at = updated_at WHERE project = ? AND number = ? AND stage = ?"
    " AND updated_at = ? RETURNING number"
)


class TimerGone(PipelineError):
    """The timer's row is gone or another daemon is firing it: nothing to do here."""


def unchanged(conn: Conn, project: str, item: Item) -> None:
    """Refuse unless ``item`` is still as read (locking its row until the commit); on a
    store only this daemon writes (SQLite), nothing to check.

    Raises:
        PipelineError: it changed or went meanwhile; nothing was written.
    """
    if not shared(conn):
        return
    stage = item_row(project, item)[5]
    params = (project, item.number, stage, float(item.updated_at))
    if not conn.execute(_UNCHANGED, params).fetchall():
        raise PipelineError(f"{item.label} changed meanwhile; nothing was written. Look again.")


def claim_timer(conn: Conn, timer_id: str) -> None:
    """Hold timer ``timer_id``'s row until the commit.

    Raises:
        TimerGone: no such row, or another transaction holds it.
    """
    if not claim(conn, "SELECT id FROM timers WHERE id = ?", (timer_id,)):
        raise TimerGone(f"timer {timer_id} is gone or firing elsewhere")
