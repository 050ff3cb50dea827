"""The pipeline's branch of the error tree and the one set of value checks it uses.

Every pipeline value (stages, items, events, op payloads) checks its fields on construction
with these, so one kind of bad value is refused in the same words everywhere. The tree is drawn in
:mod:`config.errors`.
"""

from __future__ import annotations

import math

from config.errors import MusherError

_SHOWN = 80  # characters of a refused value quoted back


class PipelineError(MusherError):
    """A pipeline value or event is invalid; ``str(err)`` is fit to show a user."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def require_text(
    value: object,
    what: str,
    *,
    limit: int | None = None,
    spaces: bool = True,
    one_line: bool = False,
) -> str:
    """``value`` if it is a non-blank ``str`` (of at most ``limit`` characters, without
    whitespace unless ``spaces``, without line breaks if ``one_line``).

    Raises:
        PipelineError: naming ``what`` and the rule it broke.
    """
    if not isinstance(value, str) or not value.strip() or (limit and len(value) > limit):
        most = f" of at most {limit} characters" if limit else ""
        raise PipelineError(f"{what} must be a non-empty string{most}, got {_shown(value)}")
    if not spaces and any(ch.isspace() for ch in value):
        raise PipelineError(f"{what} must not contain spaces, got {_shown(value)}")
    if one_line and ("\n" in value or "\r" in value):
        raise PipelineError(f"{what} must be a single line")
    return value


def require_string(value: object, what: str) -> str:
    """``value`` if it is a ``str``, empty allowed. Raises PipelineError otherwise."""
    if not isinstance(value, str):
        raise PipelineError(f"{what} must be a string, got {_shown(value)}")
    return value


def require_positive(value: object, what: str) -> int:
    """``value`` if it is an ``int`` ≥ 1 (``bool`` is not). Raises PipelineError otherwise."""
    if type(value) is int and value >= 1:  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{what} must be a positive integer, got {_shown(value)}")
    return value


def require_count(value: object, what: str) -> int:
    """``value`` if it is an ``int`` ≥ 0 (``bool`` is not). Raises PipelineError otherwise."""
    if type(value) is int and value >= 0:  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PipelineError(f"{what} must be a non-negative integer, got {_shown(value)}")
    return value


def require_finite(value: object, what: str) -> float:
    """``value`` if it is a finite ``int`` or ``float`` (``bool`` is not), as given."""
    if type(value) is float and math.isfinite(value):  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PipelineError(f"{what} must be a finite number, got {_shown(value)}")
    return value
