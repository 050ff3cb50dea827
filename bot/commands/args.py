"""Argument models for commands and the chat-text parser that fills them.

An argument model is a pydantic model (the same model gives the LLM tool's JSON schema).
Fields are positional in declaration order unless marked:

* ``Annotated[str, Rest]`` takes every remaining word (a title, a reason);
* ``Annotated[T, Option("--epic")]`` is filled from ``--epic VALUE`` anywhere in the text;
* ``Annotated[str, Verbatim]`` takes every word as typed, ``--flags`` included (commands
  that only answer "not available yet");
* ``Annotated[bool, Flag("--yes")]`` is true when ``--yes`` is anywhere in the text;
* ``ItemNumber`` accepts ``12`` and ``#12``;
* ``CleanText`` is free text with control and bidi-override characters taken out (R12).

An option given twice is refused, except for a tuple field (``--depends 1 --depends 2``),
whose values are merged.
"""

from __future__ import annotations

import re
import shlex
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from config.errors import UsageError
from pipeline.text_rules import clean_line


class Args(BaseModel):
    """Base of every argument model: immutable, unknown fields refused (lesson 509)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoArgs(Args):
    """For commands that take nothing."""


@dataclass(frozen=True, slots=True)
class RestMarker:
    """Marks the field that swallows the remaining words."""


@dataclass(frozen=True, slots=True)
class Option:
    """Marks a field filled from ``flag VALUE``."""

    flag: str


@dataclass(frozen=True, slots=True)
class VerbatimMarker:
    """Marks the field that takes every word as typed, options included."""


@dataclass(frozen=True, slots=True)
class Flag:
    """Marks a boolean field set by ``flag`` alone (no value follows it)."""

    flag: str


Rest = RestMarker()
Verbatim = VerbatimMarker()


def clean_text(value: object) -> object:
    """Free text as one line without hidden characters (:func:`pipeline.text_rules.clean_line`),
    so a title reads as it is stored (R12)."""
    return clean_line(value) if isinstance(value, str) else value


CleanText = Annotated[str, BeforeValidator(clean_text)]


def _item_number(value: object) -> object:
    if isinstance(value, str):
        value = value.strip().removeprefix("#")
    return value


ItemNumber = Annotated[int, BeforeValidator(_item_number), Field(ge=1, description="item number")]
"""Any positive number: one beyond what the store can hold is simply not an item (C3)."""


def split_words(text: str) -> list[str]:
    """Split like a shell where quotes are balanced, else on whitespace (``don't`` stays whole)."""
    if _SHELL_WORDS.fullmatch(text):
        return text.split()  # no quote, no backslash, no other blank: what shlex would say
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


_SHELL_WORDS = re.compile(r"[^'\"\\\s]*(?:[ \t\r\n]+[^'\"\\\s]+)*[ \t\r\n]*")
"""Text ``shlex.split`` splits exactly like ``str.split``: no quotes, no backslash, and no
whitespace but the four shlex splits on (``str.split`` also splits on form feeds, NBSP, …)."""


def parse_args(model: type[Args], words: list[str], usage: str) -> Args:
    """Fill ``model`` from chat words; raise :class:`UsageError` (``usage``) if they don't fit."""
    verbatim = [name for name, info in model.model_fields.items() if Verbatim in info.metadata]
    if verbatim:
        return _validate(model, {verbatim[0]: " ".join(words)}, usage)
    positional, options = _split_options(model, words, usage)
    values: dict[str, Any] = dict(options)
    for name, info in model.model_fields.items():
        if name in values or _option_flag(info.metadata) is not None:
            continue
        if RestMarker() in info.metadata:
            if positional:
                values[name] = " ".join(positional)
                positional = []
            continue
        if positional:
            values[name] = positional.pop(0)
    if positional:
        raise UsageError(f"Usage: {usage}")
    return _validate(model, values, usage)


def _validate(model: type[Args], values: dict[str, Any], usage: str) -> Args:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise UsageError(usage_message(usage, err)) from None


def _split_options(
    model: type[Args], words: list[str], usage: str
) -> tuple[list[str], dict[str, str]]:
    flags = {
        flag: name
        for name, info in model.model_fields.items()
        if (flag := _option_flag(info.metadata)) is not None
    }
    switches = {
        meta.flag: name
        for name, info in model.model_fields.items()
        for meta in info.metadata
        if isinstance(meta, Flag)
    }
    positional: list[str] = []
    options: dict[str, str] = {}
    it = iter(words)
    for word in it:
        if word.lower() in switches:
            options[switches[word.lower()]] = "true"
        elif word.startswith("--") and len(word) > 2:
            name = flags.get(word.lower())
            value = next(it, None)
            if name is None or value is None:
                raise UsageError(f"Usage: {usage}")
            if name in options:
                if not _repeatable(model, name):
                    raise UsageError(f"Usage: {usage}\n{word} given twice")
                value = f"{options[name]},{value}"
            options[name] = value
        else:
            positional.append(word)
    return positional, options


def _repeatable(model: type[Args], name: str) -> bool:
    """Whether an option may be given again, its values merged: a tuple field."""
    return typing.get_origin(model.model_fields[name].annotation) is tuple


def _option_flag(metadata: list[Any]) -> str | None:
    """The flag of an :class:`Option` or :class:`Flag` field (neither is positional)."""
    for meta in metadata:
        if isinstance(meta, Option | Flag):
            return meta.flag
    return None


def usage_message(usage: str, err: ValidationError) -> str:
    """``Usage: …`` followed by one line per problem pydantic found."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        problems.append(f"{where}: {e['msg']}" if where else e["msg"])
    return f"Usage: {usage}\n" + "\n".join(problems)
