"""The pipeline events of ops read back from the op log: changes another daemon committed.

The engine tells its listeners of its own commits from the items it read and wrote; a
daemon sharing the store (K2) learns of the others' commits only from the op log. For those
ops this gives the same events (:func:`pipeline.events.item_created`,
:func:`~pipeline.events.item_changed`, built from the item before and after the op), marked
``remote``. The item before an op is the item's earlier ops folded in log order, as
materialising them did; ``effects`` of a remote purge are not known (only the original
write knows what it cleared), so its ``layers`` are empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from pipeline.canonical import loads
from pipeline.events import ItemPurged, PipelineEvent, item_changed, item_created
from pipeline.model import Item, Origin
from pipeline.ops import CreateItem, PurgeItem, UpdateItem
from pipeline.store import AppliedOp

ITEM_KINDS = frozenset({CreateItem.KIND, UpdateItem.KIND, PurgeItem.KIND})
"""The op kinds that give an event."""


def item_at(ops: Iterable[AppliedOp]) -> Item | None:
    """The item as ``ops`` (one item's, in log order) leave it; None before its creation
    or after its purge."""
    item: Item | None = None
    for applied in ops:
        match applied.change:
            case CreateItem(item=created):
                item = created
            case UpdateItem() as change if item is not None:
                item = dataclasses.replace(item, **change.changes(), updated_at=applied.op.ts)
            case PurgeItem():
                item = None
            case _:
                pass
    return item


def event_of(applied: AppliedOp, earlier: Iterable[AppliedOp]) -> PipelineEvent | None:
    """The (remote) event of ``applied``, given the same item's ops before it; None for an
    op that changes no item, or one whose item the earlier ops do not hold."""
    change = applied.change
    if isinstance(change, CreateItem):
        return item_created(change.project, change.item, remote=True)
    if not isinstance(change, UpdateItem | PurgeItem):
        return None
    before = item_at(earlier)
    if before is None:
        return None
    origin = Origin.from_dict(loads(applied.op.origin))  # decode() checked its shape
    ts = applied.op.ts
    if isinstance(change, PurgeItem):
        return ItemPurged(change.project, change.number, before.title, (), origin, ts, True)
    after = dataclasses.replace(before, **change.changes(), updated_at=ts)
    return item_changed(change.project, before, after, origin, remote=True)
