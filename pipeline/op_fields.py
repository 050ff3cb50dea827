"""The field checks every op change shares beyond :mod:`pipeline.errors`' value checks:
project names, payload keys, ``KEEP``.

:mod:`pipeline.ops` (items, timers, rooms) and :mod:`pipeline.project_ops` (the project
registry) both build on these, so a malformed field fails the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from pipeline.errors import PipelineError

PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class Keep(Enum):
    """The "leave this field as it is" marker of partial updates (items, rooms, projects)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def project_name(value: object) -> str:
    """``value`` when it is a valid project name (N1), else :class:`PipelineError`."""
    if type(value) is str and value in _VALID_NAMES:
        return value
    if not isinstance(value, str) or not PROJECT_NAME.fullmatch(value):
        raise PipelineError(f"bad project name {value!r}: use a-z, 0-9 and '-', up to 63")
    if len(_VALID_NAMES) >= 1024:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(value)
    return value


_VALID_NAMES: set[object] = set()
"""Project names already found valid: names repeat in every op of a log."""


def keys(
    payload: Mapping[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    """Refuse a payload missing a ``required`` key or holding one outside both sets."""
    present = set(payload)
    if not required <= present or not present <= required | optional:
        want = sorted(required) + [f"[{key}]" for key in sorted(optional)]
        raise PipelineError(f"payload takes keys {want}, got {sorted(present)}")


def no_item(item: int | None, kind: str) -> None:
    """Refuse an item column on an op ``kind`` that names no item."""
    if item is not None:
        raise PipelineError(f"a {kind} op names no item, got #{item}")
