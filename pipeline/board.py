"""What ``status`` reads of a project: per board column a count and the first few items.

A :class:`BoardView` holds only what the board shows, so a project of thousands of items is
not read and decoded whole: :meth:`pipeline.store.OpStore.board_view` fills one from the
``items`` table's derived ``col`` column, and :func:`board_view` builds the very same view
from a full item list (what the store's answer must equal). Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.model import Column, Item, column


@dataclass(frozen=True, slots=True)
class BoardView:
    """A project's board, cut to ``per_column`` items per listed column.

    ``counts``: the live items per column, every column with any (archived included);
    ``listed``: for each listed column with items, its first items in board order (by
    number; newest first in the ``newest_first`` columns); ``dep_columns``: the column of
    every live item a listed item depends on (a purged dependency is absent).
    """

    counts: Mapping[Column, int]
    listed: Mapping[Column, tuple[Item, ...]]
    dep_columns: Mapping[int, Column]


def board_order(items: Iterable[Item], newest_first: bool) -> list[Item]:
    """``items`` as one column lists them: by number, or newest (highest) first."""
    return sorted(items, key=lambda item: item.number, reverse=newest_first)


def board_view(
    items: Sequence[Item],
    columns: Sequence[Column],
    per_column: int,
    newest_first: Collection[Column] = (),
) -> BoardView:
    """The :class:`BoardView` of ``items`` (every live item of a project, in any order)."""
    grouped: dict[Column, list[Item]] = {}
    for item in items:
        grouped.setdefault(column(item.stage), []).append(item)
    listed = {
        col: tuple(board_order(grouped[col], col in newest_first)[:per_column])
        for col in columns
        if col in grouped
    }
    by_number = {item.number: item for item in items}
    deps = {n for shown in listed.values() for item in shown for n in item.depends_on}
    return BoardView(
        counts={col: len(in_column) for col, in_column in grouped.items()},
        listed=listed,
        dep_columns={n: column(by_number[n].stage) for n in deps if n in by_number},
    )
