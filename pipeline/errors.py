"""The pipeline's error root and the small value checks every pipeline value uses."""

from __future__ import annotations


class PipelineError(Exception):
    """A pipeline value or event is invalid; ``str(err)`` is fit to show a user."""


def require_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PipelineError(f"{what} must be a non-empty string, got {value!r}")
    return value


def require_positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineError(f"{what} must be a positive integer, got {value!r}")
    return value
