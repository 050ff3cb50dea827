"""Application (slash) commands generated from the command registry, and back to chat text.

``/musher line:<anything>`` takes a whole chat line (a command or free text for the LLM).
Every registry command is also its own application command with typed options —
``/move item:12 stage:qa``, ``/timer-cancel id:…`` — whose values are turned back into the
chat line ``move 12 qa``, so an application command runs exactly as the typed text would
(the same journal, the same parser, the same replies).
"""

from __future__ import annotations

import enum
import re
import shlex
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge
from pydantic.fields import FieldInfo

from bot.commands.args import Option, RestMarker
from bot.commands.registry import Command, Registry

MAIN = "musher"
LINE = "line"
STRING, INTEGER = 3, 4
CHAT_INPUT = 1
# Commands that only read: their replies are shown to the asker alone (ephemeral).
READ_ONLY = frozenset({"help", "status", "show", "cost", "projects", "all_status", "timers"})
_RENAMED = {"number": "item"}  # ``/move item:12`` reads better than ``number:12``
_NAME_OK = re.compile(r"^[-_a-z0-9]{1,32}$")


def command_name(command: Command) -> str:
    """The application command's name: ``timer cancel`` → ``timer-cancel``."""
    return command.name.replace(" ", "-").lower()


def option_name(field: str) -> str:
    return _RENAMED.get(field, field)


def application_commands(registry: Registry) -> list[dict[str, Any]]:
    """The payload of a bulk overwrite: ``/musher`` plus one command per registry entry."""
    main = {
        "name": MAIN,
        "type": CHAT_INPUT,
        "description": "Run a musher command, or ask musher anything",
        "options": [
            {
                "type": STRING,
                "name": LINE,
                "description": "A command (status, move 12 qa…) or a question",
                "required": True,
                "max_length": 2000,
            }
        ],
    }
    found = [main]
    for command in registry.commands():
        name = command_name(command)
        if name == MAIN or not _NAME_OK.match(name):
            continue
        shown = _shown(command)
        options = [_option(k, f) for k, f in command.args.model_fields.items() if k in shown]
        options.sort(key=lambda o: not o["required"])  # Discord wants required ones first
        found.append(
            {
                "name": name,
                "type": CHAT_INPUT,
                "description": command.summary[:100] or name,
                "options": options,
            }
        )
    return found


def line_of(registry: Registry, name: str, options: Sequence[Mapping[str, Any]]) -> str | None:
    """The chat line an invocation stands for, or ``None`` for a command we do not have."""
    values = {str(o.get("name")): o.get("value") for o in options if isinstance(o, Mapping)}
    if name == MAIN:
        line = values.get(LINE)
        return line.strip() if isinstance(line, str) and line.strip() else "help"
    command = next((c for c in registry.commands() if command_name(c) == name), None)
    if command is None:
        return None
    words, flags, rest = [command.name], [], ""
    shown = _shown(command)
    for key, field in command.args.model_fields.items():
        value = values.get(option_name(key))
        if key not in shown:
            literal = get_args(_base(field.annotation))
            words += [str(literal[0])] if literal else []
        elif value is None or value == "":
            continue
        elif (flag := _flag(field)) is not None:
            flags += [flag, _quoted(str(value))]
        elif RestMarker() in field.metadata:
            rest = str(value)
        else:
            words.append(_quoted(str(value)))
    return " ".join([*words, *([rest] if rest else []), *flags])


def _option(key: str, field: FieldInfo) -> dict[str, Any]:
    base = _base(field.annotation)
    option: dict[str, Any] = {
        "name": option_name(key),
        "description": (field.description or key.replace("_", " "))[:100],
        "required": field.is_required(),
        "type": STRING,
    }
    if base is int:
        option["type"] = INTEGER
        minimum = next((m.ge for m in _metadata(field) if isinstance(m, Ge)), None)
        if minimum is not None:
            option["min_value"] = minimum
    elif get_origin(base) is Literal:
        option["choices"] = [{"name": str(v), "value": str(v)} for v in get_args(base)]
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        option["choices"] = [{"name": str(m.value), "value": str(m.value)} for m in base]
    elif get_origin(base) is tuple:
        option["description"] = f"{option['description']} (item numbers, e.g. 3,4)"[:100]
    return option


def _base(annotation: Any) -> Any:
    """``Optional[Annotated[int, …]]`` → ``int``: the type an option carries."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else str
        else:
            return annotation


def _metadata(field: FieldInfo) -> list[Any]:
    found = list(field.metadata)
    annotation = field.annotation
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated:
            for extra in get_args(arg)[1:]:
                found += [extra, *getattr(extra, "metadata", [])]
    return found


def _shown(command: Command) -> set[str]:
    """The argument fields the schema shows (``supersede``'s fixed word ``by`` is not)."""
    return set(command.args.model_json_schema().get("properties", {}))


def _flag(field: FieldInfo) -> str | None:
    return next((m.flag for m in field.metadata if isinstance(m, Option)), None)


def _quoted(value: str) -> str:
    return shlex.quote(value) if any(c.isspace() or c in "'\"" for c in value) else value
