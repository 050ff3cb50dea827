"""What the engine tells its listeners after each commit, and the fan-out that tells them.

The event bus (E1) is built on this: each value says what committed, with who caused it and
the op's time. Listeners are plain synchronous callables. ``remote`` marks a change another
daemon of the cluster committed (K2), read back from the shared op log
(:mod:`pipeline.op_events`); the daemon that committed a change saw it with ``remote`` off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from pipeline.model import Item, ItemKind, Origin, Stage

log = logging.getLogger("musher.engine")


@dataclass(frozen=True, slots=True)
class ItemCreated:
    """An item's creation committed."""

    project: str
    number: int
    title: str
    kind: ItemKind
    stage: Stage
    depends_on: tuple[int, ...]
    origin: Origin
    ts: float
    remote: bool = False


@dataclass(frozen=True, slots=True)
class ItemChanged:
    """An item's update committed; the stages are equal when only dependencies changed."""

    project: str
    number: int
    title: str
    from_stage: Stage
    to_stage: Stage
    origin: Origin
    ts: float
    remote: bool = False


@dataclass(frozen=True, slots=True)
class ItemPurged:
    """An item's purge committed; ``layers`` is what it cleared."""

    project: str
    number: int
    title: str
    layers: tuple[str, ...]
    origin: Origin
    ts: float
    remote: bool = False


def item_created(project: str, item: Item, *, remote: bool = False) -> ItemCreated:
    """The event of ``item``'s creation (its origin and time are the item's)."""
    return ItemCreated(
        project=project, number=item.number, title=item.title, kind=item.kind,
        stage=item.stage, depends_on=item.depends_on, origin=item.origin, ts=item.created_at,
        remote=remote,
    )  # fmt: skip


def item_changed(
    project: str, before: Item, after: Item, origin: Origin, *, remote: bool = False
) -> ItemChanged:
    """The event of one committed change from ``before`` to ``after`` (at its updated_at)."""
    return ItemChanged(
        project=project, number=after.number, title=after.title, from_stage=before.stage,
        to_stage=after.stage, origin=origin, ts=after.updated_at, remote=remote,
    )  # fmt: skip


PipelineEvent: TypeAlias = ItemCreated | ItemChanged | ItemPurged
Listener: TypeAlias = Callable[[PipelineEvent], None]


class Fanout:
    """Synchronous fan-out to listeners, in subscription order.

    Guarantees: every listener is called once per :meth:`emit`; one that raises is logged
    and neither the emitter nor the other listeners see the exception.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: PipelineEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("pipeline listener %r failed on %r", listener, event)
