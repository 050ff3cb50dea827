"""Argument models for commands and the chat-text parser that fills them.

An argument model is a pydantic model (the same model gives the LLM tool's JSON schema).
Fields are positional in declaration order unless marked:

* ``Annotated[str, Rest]`` takes every remaining word (a title, a reason);
* ``Annotated[T, Option("--epic")]`` is filled from ``--epic VALUE`` anywhere in the text;
* ``Annotated[bool, Flag("--yes")]`` is true when ``--yes`` is anywhere in the text;
* ``ItemNumber`` accepts ``12`` and ``#12``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.errors import UsageError


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
class Flag:
    """Marks a boolean field set by ``flag`` alone (no value follows it)."""

    flag: str


Rest = RestMarker()


def _item_number(value: object) -> object:
    if isinstance(value, str):
        value = value.strip().removeprefix("#")
    return value


ItemNumber = Annotated[int, BeforeValidator(_item_number), Field(ge=1, description="item number")]


def split_words(text: str) -> list[str]:
    """Split like a shell where quotes are balanced, else on whitespace (``don't`` stays whole)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def parse_args(model: type[Args], words: list[str], usage: str) -> Args:
    """Fill ``model`` from chat words; raise :class:`UsageError` (``usage``) if they don't fit."""
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
            options[name] = value
        else:
            positional.append(word)
    return positional, options


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
