"""Canonical JSON: the one byte form of op payloads, origins and the bytes an op signs.

Sorted keys, no whitespace, UTF-8, integers as integers, floats as their shortest round-trip
form. Values that JSON cannot carry exactly (NaN, infinities, non-string keys, lone
surrogates, sets, arbitrary objects) are refused instead of being coerced, so two equal values
always give equal bytes and a parsed canonical text re-encodes to the very same text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pipeline.model import PipelineError

_MAX_DEPTH = 32


def _check(value: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise PipelineError(f"JSON value nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PipelineError(f"JSON cannot carry the number {value!r}")
        return
    if isinstance(value, list | tuple):
        for element in value:
            _check(element, depth + 1)
        return
    if isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str):
                raise PipelineError(f"JSON object keys must be strings, got {key!r}")
            _check(element, depth + 1)
        return
    raise PipelineError(f"not a JSON value: {value!r}")


def canonical_json(value: object) -> str:
    """Encode ``value`` canonically (tuples become arrays).

    Raises:
        PipelineError: ``value`` holds something JSON cannot carry exactly (NaN, ±inf, a
            non-string key, a lone surrogate, a non-JSON object, or nesting past 32 levels).
    """
    _check(value, 0)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PipelineError(f"JSON text must be valid UTF-8: {exc.reason}") from None
    return text


def canonical_bytes(value: object) -> bytes:
    """:func:`canonical_json` as UTF-8 bytes: what gets signed and compared."""
    return canonical_json(value).encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise PipelineError(f"JSON cannot carry the number {name}")


def parse_canonical(text: object) -> Any:
    """Parse a canonical JSON text, refusing any text that is not already canonical.

    Guarantees: ``canonical_json(parse_canonical(t)) == t`` for every accepted ``t``; so
    whitespace, reordered or duplicate keys, ``NaN`` and ``1.00`` are all refused.

    Raises:
        PipelineError: not a string, not JSON, or not in canonical form.
    """
    if not isinstance(text, str):
        raise PipelineError(f"expected JSON text, got {type(text).__name__}")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"not JSON: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:
        raise PipelineError("JSON value nested too deeply") from None
    if canonical_json(value) != text:
        raise PipelineError("JSON text is not in canonical form")
    return value
