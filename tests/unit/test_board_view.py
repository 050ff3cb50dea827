"""``status`` reads only what it shows: the store's board view equals the full-decode board.

The reference below is the board as it was rendered from every decoded item before the
store learned to cut it (``items.col``); the store's path must give the same text, byte for
byte, on varied projects (every stage, long columns, dependencies on live, finished and
purged items, moves after creation). A database written before ``items.col`` existed must
open, migrate, verify and show the same board.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.commands.board import (
    BOARD,
    BOARD_COLUMNS,
    NEWEST_FIRST,
    PER_COLUMN,
    item_line,
    render_board,
    render_item,
    render_view,
)
from bot.db import Database
from pipeline.audit import RowMismatch, verify
from pipeline.board import board_view
from pipeline.keys import NodeKey
from pipeline.materialise import has_board_column, read_tables
from pipeline.model import (
    Abandoned,
    Archived,
    Backlog,
    Blocked,
    Coding,
    Column,
    Done,
    Frozen,
    Item,
    ItemKind,
    Merge,
    MergeFailure,
    Qa,
    Rejected,
    ReviewHold,
    Stage,
    Superseded,
    UserOrigin,
    column,
)
from pipeline.ops import CreateItem, CreateProject, PurgeItem, UpdateItem
from pipeline.store import OpStore

ALICE = UserOrigin("web", "alice", "lobby")
PROJECT = "demo"
NOW = 1_700_000_000.0
STAGES: tuple[Stage, ...] = (
    Backlog(), Coding(), Qa(), Merge(), Done(), Done("3f9c2a1b7d4e"), Archived(),
    Archived("moved to the wiki"), Blocked("no keys"), ReviewHold("design review"),
    MergeFailure("conflict", "main moved"), Frozen(Backlog()), Frozen(Qa()),
    Frozen(Blocked("waiting")), Abandoned("not needed"), Superseded(by=1),
    Rejected("out of scope"),
)  # fmt: skip


def reference_board(project: str, items: Sequence[Item], now: float) -> str:
    """The board as ``status`` rendered it from every decoded item (items by number)."""
    by_number = {item.number: item for item in items}
    grouped: dict[Column, list[Item]] = {}
    for item in items:
        grouped.setdefault(column(item.stage), []).append(item)
    archived = len(grouped.get(Column.ARCHIVED, ()))
    shown = len(items) - archived
    head = f"{project}: {shown} item{'s' * (shown != 1)}"
    if archived:
        head += f" ({archived} archived not shown)"
    if not shown:
        return f"{head}. Add one with `new story <title>`."
    lines = [head]
    for col, label in BOARD:
        in_column = grouped.get(col, [])
        if not in_column:
            continue
        lines.append(f"{label} ({len(in_column)})")
        listed = in_column[::-1] if col in NEWEST_FIRST else in_column
        for item in listed[:PER_COLUMN]:
            deps = {n: column(by_number[n].stage) for n in item.depends_on if n in by_number}
            lines.append(f"  {item_line(item, deps, now)}")
        if len(in_column) > PER_COLUMN:
            lines.append(f"  … and {len(in_column) - PER_COLUMN} more (`status N` shows one)")
    return "\n".join(lines)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "musher.db")
    yield database
    await database.aclose()


async def varied_project(store: OpStore, seed: int, count: int) -> None:
    """``count`` items in a seeded mix of every stage, some with dependencies (on earlier
    items, some later purged), then a few moves, retitles and purges."""
    rng = random.Random(seed)
    await store.append(CreateProject(PROJECT, "/srv/demo", "main", "UTC"), ALICE)
    weights = [rng.randint(1, 6) for _ in STAGES]
    creates = []
    for n in range(1, count + 1):
        stage = rng.choices(STAGES, weights)[0]
        deps = tuple(rng.sample(range(1, n), min(n - 1, rng.randint(0, 3))))
        at = NOW - rng.uniform(60, 30 * 86_400)
        item = Item(
            number=n, kind=rng.choice(list(ItemKind)), title=f"item {n}", stage=stage,
            depends_on=deps, origin=ALICE, created_at=at, updated_at=at,
        )  # fmt: skip
        creates.append(CreateItem(PROJECT, item))
    await store.append_many(creates, ALICE)
    for n in rng.sample(range(1, count + 1), count // 5):
        await store.append(UpdateItem(PROJECT, n, stage=rng.choice(STAGES)), ALICE)
    await store.append(UpdateItem(PROJECT, 2, title="renamed"), ALICE)
    for n in rng.sample(range(1, count + 1), count // 10):
        await store.append(PurgeItem(PROJECT, n), ALICE)


async def store_board(store: OpStore) -> str:
    view = await store.board_view(PROJECT, BOARD_COLUMNS, PER_COLUMN, NEWEST_FIRST)
    return render_view(PROJECT, view, NOW)


@pytest.mark.parametrize(("seed", "count"), [(1, 12), (2, 60), (3, 150), (4, 400)])
async def test_the_store_board_equals_the_full_decode_board(
    db: Database, seed: int, count: int
) -> None:
    store = await OpStore.open(db, NodeKey.generate(), clock=Clock())
    await varied_project(store, seed, count)
    items = await store.items(PROJECT)
    expected = reference_board(PROJECT, items, NOW)

    assert await store_board(store) == expected
    assert render_board(PROJECT, items, NOW) == expected
    for per_column in (1, 4, PER_COLUMN):
        view = await store.board_view(PROJECT, BOARD_COLUMNS, per_column, NEWEST_FIRST)
        assert view == board_view(items, BOARD_COLUMNS, per_column, NEWEST_FIRST)
        assert sum(view.counts.values()) == len(items)


async def test_status_n_reads_only_the_items_it_names_and_says_the_same(db: Database) -> None:
    store = await OpStore.open(db, NodeKey.generate(), clock=Clock())
    await varied_project(store, 5, 40)
    live = [item.number for item in await store.items(PROJECT)]
    gone = min(set(range(1, 41)) - set(live))
    await store.append(UpdateItem(PROJECT, live[-1], epic=gone), ALICE)  # "#n (gone)"
    await store.append(UpdateItem(PROJECT, live[-2], epic=live[0]), ALICE)
    items = await store.items(PROJECT)
    for item in items:
        related = await store.items_numbered(PROJECT, (*item.depends_on, item.epic or 1))
        assert render_item(PROJECT, item, related, NOW) == render_item(PROJECT, item, items, NOW)
    assert [i.number for i in await store.items_numbered(PROJECT, [9999, 3, 3, 1])] == [
        i.number for i in items if i.number in (1, 3)
    ]


async def test_an_empty_project_and_an_all_archived_one(db: Database) -> None:
    store = await OpStore.open(db, NodeKey.generate(), clock=Clock())
    await store.append(CreateProject(PROJECT, "/srv/demo", "main", "UTC"), ALICE)
    assert await store_board(store) == "demo: 0 items. Add one with `new story <title>`."
    await store.create_item(PROJECT, ALICE, kind=ItemKind.STORY, title="old", stage=Archived())
    assert await store_board(store) == reference_board(PROJECT, await store.items(PROJECT), NOW)
    assert (await store_board(store)).startswith("demo: 0 items (1 archived not shown)")


# --- a database written before items.col ----------------------------------------------------


def to_old_schema(path: Path) -> None:
    """Make ``path`` look like a data dir of the previous version: no ``items.col``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP INDEX items_by_column")
        conn.execute("ALTER TABLE items DROP COLUMN col")
        assert not has_board_column(conn)
    finally:
        conn.close()


async def test_an_old_database_migrates_verifies_and_shows_the_same_board(
    tmp_path: Path,
) -> None:
    path = tmp_path / "musher.db"
    db = await Database.open(path)
    key = NodeKey.generate()
    try:
        store = await OpStore.open(db, key, clock=Clock())
        await varied_project(store, 6, 120)
        board, items = await store_board(store), await store.items(PROJECT)
        tables = await db.write(read_tables)
    finally:
        await db.aclose()
    to_old_schema(path)

    db = await Database.open(path)
    try:
        report = await verify(db)  # `musher audit verify`: no store, never writes
        assert report.ok, str(report)
        assert await db.write(read_tables) == tables  # an old table reads as migrated

        store = await OpStore.open(db, key, clock=Clock())
        assert await db.write(has_board_column)
        assert await db.write(read_tables) == tables
        assert (await verify(db)).ok
        assert await store.items(PROJECT) == items
        assert await store_board(store) == board

        await store.append(UpdateItem(PROJECT, items[0].number, stage=Done()), ALICE)
        assert await store_board(store) == reference_board(PROJECT, await store.items(PROJECT), NOW)
        assert (await verify(db)).ok
    finally:
        await db.aclose()

    db = await Database.open(path)  # a second open finds nothing to migrate
    try:
        store = await OpStore.open(db, key, clock=Clock())
        assert (await verify(db)).ok
    finally:
        await db.aclose()


async def test_a_stale_col_is_named_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "musher.db"
    db = await Database.open(path)
    try:
        store = await OpStore.open(db, NodeKey.generate(), clock=Clock())
        await store.append(CreateProject(PROJECT, "/srv/demo", "main", "UTC"), ALICE)
        await store.create_item(PROJECT, ALICE, kind=ItemKind.STORY, title="one")
        await db.write(lambda c: c.execute("UPDATE items SET col = 'done' WHERE number = 1"))
        report = await verify(db)
        assert isinstance(report.problem, RowMismatch), str(report)
        assert (report.problem.table, report.problem.key) == ("items", (PROJECT, 1))
    finally:
        await db.aclose()


async def test_an_undecodable_stage_does_not_stop_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "musher.db"
    db = await Database.open(path)
    try:
        store = await OpStore.open(db, NodeKey.generate(), clock=Clock())
        await varied_project(store, 7, 10)
    finally:
        await db.aclose()
    to_old_schema(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        number = conn.execute("SELECT MIN(number) FROM items").fetchone()[0]
        conn.execute("UPDATE items SET stage = 'garbage' WHERE number = ?", (number,))
    finally:
        conn.close()

    db = await Database.open(path)
    try:
        await OpStore.open(db, NodeKey.generate())
        cols = await db.read("SELECT number, col FROM items ORDER BY number")
        assert cols[0][0] == number and cols[0][1] == ""  # on no column of the board
        assert all(Column(col) for _, col in cols[1:])
        report = await verify(db)
        assert isinstance(report.problem, RowMismatch), str(report)
        assert (report.problem.table, report.problem.key) == ("items", (PROJECT, number))
    finally:
        await db.aclose()
