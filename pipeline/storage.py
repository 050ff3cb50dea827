"""The database seam of the pipeline: what the store, the audit and the log check run on.

``bot.db.Database`` satisfies it; so does any object with these two methods.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class Storage(Protocol):
    """``write`` runs ``job`` inside a transaction (possibly shared with other jobs: group
    commit) and returns after the commit is durable; if the job raises, its writes are
    rolled back and ``write`` raises. ``read`` runs one query on a separate connection.
    """

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T: ...

    async def read(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@runtime_checkable
class SnapshotStorage(Storage, Protocol):
    """A :class:`Storage` that can also run a read-only ``job`` on one consistent snapshot
    without holding up writes (``audit verify`` reads the whole log and every table so).
    A storage without it is read inside a write transaction instead."""

    async def snapshot(self, job: Callable[[sqlite3.Connection], T]) -> T: ...
