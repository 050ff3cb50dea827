"""R4's victim: append ops forever and print ``ack <seq>`` after each commit returned.

Run as ``python -m tests.reliability.oplog_writer DATA_DIR [WORKERS [STORE_URL]]`` (the
store defaults to DATA_DIR's SQLite file); the test SIGKILLs
it. Workers append concurrently (sharing group commits): one creates items, the others move
items and change room settings. A line is printed only after ``append`` returned, so every
printed seq must be in the log after the kill.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.store_url import open_db
from pipeline.keys import load_or_create
from pipeline.model import Backlog, Coding, Item, ItemKind, SystemOrigin
from pipeline.ops import Change, CreateItem, CreateProject, SetRoom, UpdateItem
from pipeline.store import OpStore

ORIGIN = SystemOrigin("reliability", "oplog crash test")
PROJECT = "crash"


def ack(seq: int) -> None:
    sys.stdout.write(f"ack {seq}\n")
    sys.stdout.flush()


async def create_items(store: OpStore, first: int) -> None:
    number = first
    while True:
        item = Item(number=number, kind=ItemKind.STORY, title=f"item {number}", origin=ORIGIN,
                    created_at=1.0, updated_at=1.0)  # fmt: skip
        ack((await store.append(CreateItem(PROJECT, item), ORIGIN)).seq)
        number += 1


async def churn(store: OpStore, worker: int) -> None:
    count = 0
    while True:
        count += 1
        change: Change = SetRoom(f"web:room{worker}-{count % 7}", ambient=count % 2 == 0)
        if count % 3 == 0 and (last := await store.next_number(PROJECT) - 1) > 0:
            target = 1 + (count * 7919 + worker) % last
            current = await store.item(PROJECT, target)
            if current is not None:
                stage = Coding() if current.stage == Backlog() else Backlog()
                change = UpdateItem(PROJECT, target, stage=stage)
        ack((await store.append(change, ORIGIN)).seq)


async def main(data_dir: Path, workers: int, url: str | None) -> None:
    db = await open_db(url, data_dir)
    store = await OpStore.open(db, load_or_create(data_dir))
    if not await store.projects():
        await store.append(CreateProject(PROJECT, str(data_dir), "main", "UTC"), ORIGIN)
    print(f"ready {store.next_seq}", flush=True)
    first = await store.next_number(PROJECT)
    async with asyncio.TaskGroup() as group:
        group.create_task(create_items(store, first), name="create-items")
        for worker in range(workers - 1):
            group.create_task(churn(store, worker), name=f"churn-{worker}")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(Path(args[0]), int(args[1]) if len(args) > 1 else 8, (args[2:] or [None])[0]))
