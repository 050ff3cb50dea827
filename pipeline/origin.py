"""Who caused a change (S2): a person in a room, a coding agent, or the daemon itself."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pipeline.errors import PipelineError, require_text


class Origin(ABC):
    """Who caused a change: a person in a room, a coding agent, or the daemon itself.

    Every field of every origin is a required non-blank string: attribution is never empty.
    """

    __slots__ = ()

    def __post_init__(self) -> None:
        for key, value in self.to_dict().items():
            require_text(value, f"origin {key}")

    def to_dict(self) -> dict[str, str]:
        """The op log form: exactly this origin's keys (see :meth:`from_dict`)."""
        return {name: getattr(self, name) for name in _field_names(type(self))}

    @abstractmethod
    def describe(self) -> str:
        """A short human label, e.g. ``alice (web:lobby)``."""

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Origin:
        """Rebuild an origin from :meth:`to_dict`'s output, chosen by its exact key set.

        Raises:
            PipelineError: the keys match no origin shape, or a value is blank or not a str.
        """
        if type(data) is dict and all(type(value) is str for value in data.values()):
            return _origin_of(tuple(data.items()))  # origins repeat: each is checked once
        return _origin_from(data)


@dataclass(frozen=True, slots=True)
class UserOrigin(Origin):
    """A person: ``user`` in ``room`` on ``transport`` (``web``, ``matrix``, ``slack``, …)."""

    transport: str
    user: str
    room: str

    def describe(self) -> str:
        return f"{self.user} ({self.transport}:{self.room})"


@dataclass(frozen=True, slots=True)
class AgentOrigin(Origin):
    """A coding agent: ``agent`` is its kind (e.g. ``claude``), ``name`` its configured name."""

    agent: str
    name: str

    def describe(self) -> str:
        return f"{self.name} (agent {self.agent})"


@dataclass(frozen=True, slots=True)
class SystemOrigin(Origin):
    """The daemon itself: ``system`` names the part (``timers``, ``deps``), ``reason`` why."""

    system: str
    reason: str

    def describe(self) -> str:
        return f"{self.system} ({self.reason})"


@functools.cache
def _field_names(cls: type[Origin]) -> tuple[str, ...]:
    """The field names of an origin class, computed once (decoding the log calls this a lot)."""
    return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def _origin_of(items: tuple[tuple[str, str], ...]) -> Origin:
    """:func:`_origin_from` of a dict of strings, once per distinct one (a log names the
    same few people, agents and daemon reasons again and again); failures are not cached."""
    return _origin_from(dict(items))


def _origin_from(data: object) -> Origin:
    if not isinstance(data, Mapping):
        raise PipelineError(f"an origin must be an object, got {data!r}")
    keys = frozenset(data)
    for cls in (UserOrigin, AgentOrigin, SystemOrigin):
        if keys == frozenset(_field_names(cls)):
            return cls(**data)
    raise PipelineError(
        "an origin needs {transport, user, room}, {agent, name} or {system, reason};"
        f" got {sorted(data)}"
    )
