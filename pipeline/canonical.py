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

from pipeline.errors import PipelineError

_MAX_DEPTH = 32


_SCALARS = (str, int, bool, type(None))


def _check(value: object, depth: int) -> None:
    """Refuse what ``json.dumps`` would coerce or mangle; exact-type fast path first."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise PipelineError(f"JSON cannot carry the number {value!r}")
        return
    if depth >= _MAX_DEPTH:
        raise PipelineError(f"JSON value nested deeper than {_MAX_DEPTH} levels")
    if kind is dict:
        for key, element in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise PipelineError(f"JSON object keys must be strings, got {key!r}")
            if type(element) not in _SCALARS:
                _check(element, depth + 1)
        return
    if kind is list or kind is tuple:
        for element in value:  # type: ignore[attr-defined]
            if type(element) not in _SCALARS:
                _check(element, depth + 1)
        return
    _check_subclass(value, depth)


def _check_subclass(value: object, depth: int) -> None:
    """Subclasses of the JSON types (a StrEnum, a dict subclass) are checked as their base."""
    if isinstance(value, str | int):
        return
    if isinstance(value, float):
        _check(float(value), depth)
    elif isinstance(value, dict):
        _check(dict(value), depth)
    elif isinstance(value, list | tuple):
        _check(list(value), depth)
    else:
        raise PipelineError(f"not a JSON value: {value!r}")


def canonical_json(value: object) -> str:
    """Encode ``value`` canonically (tuples become arrays).

    Raises:
        PipelineError: ``value`` holds something JSON cannot carry exactly (NaN, ±inf, a
            non-string key, a lone surrogate, a non-JSON object, or nesting past 32 levels).
    """
    _check(value, 0)
    text = _ENCODER.encode(value)
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


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def loads(text: str) -> Any:
    """Parse JSON this process wrote canonically (a table column): no canonical re-check.

    Raises:
        PipelineError: not JSON (``NaN`` and infinities included).
    """
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"not JSON: {exc.msg} at offset {exc.pos}") from None


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
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"not JSON: {exc.msg} at offset {exc.pos}") from None
    except RecursionError:
        raise PipelineError("JSON value nested too deeply") from None
    # A parsed value holds only JSON types with string keys, so of canonical_json's checks
    # only depth (possible only past _MAX_DEPTH brackets), finiteness (``1e999``: the
    # encoder's allow_nan refuses it) and UTF-8 remain.
    if text.count("[") + text.count("{") > _MAX_DEPTH:
        _check(value, 0)
    try:
        again = _ENCODER.encode(value)
    except ValueError:
        raise PipelineError("JSON cannot carry a number of the text (not finite)") from None
    if again != text:
        raise PipelineError("JSON text is not in canonical form")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PipelineError(f"JSON text must be valid UTF-8: {exc.reason}") from None
    return value
