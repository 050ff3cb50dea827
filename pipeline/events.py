"""What the engine tells its listeners after each commit, and the fan-out that tells them.

A later change builds the async event bus (E1) on this: each value says what committed, with
who caused it and the op's time. Listeners are plain synchronous callables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from pipeline.model import ItemKind, Origin, Stage

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


@dataclass(frozen=True, slots=True)
class ItemPurged:
    """An item's purge committed; ``layers`` is what it cleared."""

    project: str
    number: int
    title: str
    layers: tuple[str, ...]
    origin: Origin
    ts: float


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
