"""Find, read and explain the configuration: bot.toml overridden by ``MUSHER_*`` variables.

Every problem becomes one line ``<origin>: <dotted.key>: <problem>``, where origin is the
file, ``environment`` or ``defaults``, and all of them are reported together in one
``ConfigError``. ``render_effective`` turns settings back into TOML with secrets redacted.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import EnvSettingsSource, InitSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from config.base import redact_url
from config.errors import ConfigError
from config.models import LOCATED_ERROR, Settings

ENV_PREFIX = "MUSHER_"
CONFIG_ENV = "MUSHER_CONFIG"
DEFAULT_FILE = Path("bot.toml")
REDACTED = "**********"

Loc = tuple[str | int, ...]


def config_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """Choose the configuration file: ``--config``, else ``$MUSHER_CONFIG``, else ``./bot.toml``.

    Args:
        explicit: The ``--config`` value, if one was given.
        env: The environment to read ``MUSHER_CONFIG`` from.

    Returns:
        The file to load, or None when there is none and built-in defaults apply.

    Raises:
        ConfigError: The file named by ``--config`` or ``$MUSHER_CONFIG`` is not a file.
    """
    if explicit is not None:
        return _existing_file(Path(explicit), "given with --config")
    from_env = env.get(CONFIG_ENV, "")
    if from_env:
        return _existing_file(Path(from_env), f"named by ${CONFIG_ENV}")
    return DEFAULT_FILE if DEFAULT_FILE.is_file() else None


def _existing_file(path: Path, how: str) -> Path:
    if not path.is_file():
        problem = "not a file" if path.exists() else "no such file"
        raise ConfigError([f"{path}: {problem} ({how})"])
    return path


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``path`` (if any) and ``MUSHER_<SECTION>__<KEY>`` variables.

    Environment variables win over the file, which wins over the defaults; nested tables
    are merged key by key, so one variable changes one key. List and table values in
    variables are JSON. ``os.environ`` is read only when ``env`` is None.

    Raises:
        ConfigError: With one line per problem, every problem found, never just the first.
    """
    environ = os.environ if env is None else env
    problems: list[str] = []
    file_data = _read_toml(path, problems) if path is not None else {}
    file_readable = not problems
    env_data = _read_env(environ, problems)
    settings = None
    if file_readable:  # else every key of the file would look missing
        origins = _Origins(str(path) if path is not None else None, file_data, env_data)
        source = InitSettingsSource(Settings, init_kwargs=_merged(file_data, env_data))
        try:
            # Our source only, so os.environ cannot leak in. Without the pydantic mypy plugin,
            # mypy builds Settings.__init__ from the fields alone and misses this keyword.
            settings = Settings(_build_sources=((source,), {}))  # type: ignore[call-arg]
        except ValidationError as exc:
            problems.extend(line for error in exc.errors() for line in _explain(error, origins))
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    except UnicodeDecodeError:
        problems.append(f"{path}: cannot read: not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\s*\(at (line (\d+), column (\d+)|end of document)\)$", message)
        if where is None:
            problems.append(f"{path}: invalid TOML: {message}")
        else:
            position = where[1] if where[2] is None else f"line {where[2]}, column {where[3]}"
            problems.append(f"{path}: {position}: invalid TOML: {message[: where.start()]}")
    return {}


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._mapping, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _read_env(environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    ours = {
        name: value
        for name, value in environ.items()
        if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_ENV
    }
    for name in ours:
        path = _env_path(name)
        if len(path) > 1 and path[0] not in Settings.model_fields:
            problems.append(f"environment: {path[0]}: {_unknown_key(path[:1])} (from {name})")
    try:
        return _MappingEnvSource(ours)()
    except SettingsError:
        pass
    # Something did not parse: name each culprit, and keep the variables that did parse.
    good = {}
    for name, value in ours.items():
        try:
            _MappingEnvSource({name: value})()
        except SettingsError as exc:
            dotted = ".".join(_env_path(name))
            problems.append(f"environment: {dotted}: invalid JSON in {name}: {exc.__cause__}")
        else:
            good[name] = value
    return _MappingEnvSource(good)()


def _env_path(name: str) -> tuple[str, ...]:
    return tuple(name[len(ENV_PREFIX) :].lower().split("__"))


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge nested tables key by key; values of ``override`` win."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


@dataclass(frozen=True, slots=True)
class _Origins:
    """Where each key came from, to tell the user which place to fix."""

    file_label: str | None
    file_data: dict[str, Any]
    env_data: dict[str, Any]

    def of(self, loc: Loc) -> str:
        """The origin that set ``loc``, else the one that set its nearest parent table."""
        if _contains(self.env_data, loc):
            return "environment"
        for depth in range(len(loc), 0, -1):
            if self.file_label is not None and _contains(self.file_data, loc[:depth]):
                return self.file_label
            if _contains(self.env_data, loc[:depth]):
                return "environment"
        return "defaults"


def _contains(data: object, loc: Loc) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _explain(error: ErrorDetails, origins: _Origins) -> list[str]:
    loc: Loc = tuple(error["loc"])
    if error["type"] == LOCATED_ERROR:
        located = [
            (loc + tuple(key.split(".")), problem) for key, problem in error["ctx"]["problems"]
        ]
    elif error["type"] == "extra_forbidden":
        located = [(loc, _unknown_key(loc))]
    elif error["type"] == "model_type":
        located = [(loc, "should be a table")]
    else:
        located = [(loc, error["msg"].removeprefix("Value error, "))]
    return [f"{origins.of(at)}: {_dotted(at)}: {problem}" for at, problem in located]


def _unknown_key(loc: Loc) -> str:
    """'unknown key', with a did-you-mean hint from the keys valid next to it."""
    close = difflib.get_close_matches(str(loc[-1]), _keys_at(loc[:-1]), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _keys_at(loc: Loc) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def render_effective(settings: Settings) -> str:
    """Render ``settings`` as TOML, every table and key, for ``musher check`` to print.

    Secrets that are set appear as ``"**********"``, never as their value; unset optional
    keys appear as comments. Apart from the redacted secrets, ``load_settings`` reads the
    text back to settings equal to ``settings``.
    """
    lines = [f"# Effective musher configuration. Secrets are shown as {REDACTED}."]
    for name in type(settings).model_fields:
        _render_table(lines, name, getattr(settings, name))
    return "\n".join(lines) + "\n"


def _render_table(lines: list[str], dotted: str, table: BaseModel) -> None:
    entries: list[str] = []
    subtables: list[tuple[str, BaseModel]] = []
    for name in type(table).model_fields:
        value = getattr(table, name)
        if isinstance(value, BaseModel):
            subtables.append((f"{dotted}.{name}", value))
        elif value is None:
            entries.append(f"# {name} is not set")
        else:
            entries.append(f"{_toml_key(name)} = {_toml_value(value)}")
    if entries:
        lines.extend(["", f"[{dotted}]", *entries])
    for sub_dotted, subtable in subtables:
        _render_table(lines, sub_dotted, subtable)


def _toml_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return _toml_string(REDACTED)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str | PurePath):
        return _toml_string(redact_url(str(value)))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, BaseModel):  # an array-of-tables entry: unset keys are left out
        value = {k: v for k in type(value).model_fields if (v := getattr(value, k)) is not None}
    if isinstance(value, dict):
        pairs = [f"{_toml_key(str(key))} = {_toml_value(item)}" for key, item in value.items()]
        return "{ " + ", ".join(pairs) + " }" if pairs else "{}"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    escaped = "".join(
        _ESCAPES.get(char) or (f"\\u{ord(char):04x}" if char < " " or char == "\x7f" else char)
        for char in text
    )
    return f'"{escaped}"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)
