"""What every bot.toml model shares: the strict base table, secrets and located errors.

Checks that involve several keys raise a *located* error (:func:`located`): a
``PydanticCustomError`` of type ``LOCATED_ERROR`` whose context lists ``(key, problem)``
pairs relative to the model that raised it, so that the loader can point at each key.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr
from pydantic_core import PydanticCustomError

LOCATED_ERROR = "musher_located"
"""Error type of the multi-key checks; ``ctx["problems"]`` holds ``(dotted_key, problem)``."""


def located(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Build the error for problems at sub-keys of the model being validated."""
    summary = "; ".join(f"{key}: {problem}" for key, problem in problems)
    context = {"summary": summary, "problems": tuple(problems)}
    return PydanticCustomError(LOCATED_ERROR, "{summary}", context)


def check_secret(value: SecretStr) -> SecretStr:
    """Refuse an empty or whitespace-only secret (a token of spaces guards nothing)."""
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty or only spaces (leave the key out instead)")
    return value


def _non_empty(value: SecretStr | None) -> SecretStr | None:
    return None if value is None else check_secret(value)


Secret = Annotated[SecretStr | None, AfterValidator(_non_empty)]
"""An optional secret: never printed; an empty or blank string is refused, not accepted."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts local connections (127.0.0.0/8, ::1 or localhost)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced by ``***``, for logs and
    ``musher check`` (``postgresql://me:pw@db/musher`` → ``postgresql://me:***@db/musher``)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not sep or "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"


class Section(BaseModel):
    """Base of every bot.toml table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
