"""Slack request signatures (HTTP mode): ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``.

Checked on the raw bytes before anything parses the body. Whatever the headers hold —
missing, non-numeric, huge, non-ASCII, any length — the answer is a
:class:`~config.errors.VerificationError`, never another exception.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from config.errors import VerificationError

WINDOW_S = 300  # Slack's own rule: older (or newer) than five minutes is a replay
_MAX_TS_DIGITS = 12
_SIG_LENGTH = len("v0=") + 64


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack sends for ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    given: str | None,
    body: bytes,
    now: Callable[[], float],
) -> None:
    """Raise :class:`VerificationError` unless ``given`` signs ``body`` at a fresh ``timestamp``.

    Fresh means within :data:`WINDOW_S` seconds of ``now()`` either way. The comparison is
    constant-time.
    """
    if not timestamp or not given:
        raise VerificationError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TS_DIGITS):
        raise VerificationError("X-Slack-Request-Timestamp is not a Unix time")
    if abs(now() - int(timestamp)) > WINDOW_S:
        raise VerificationError("X-Slack-Request-Timestamp is outside the five-minute window")
    expected = signature(secret, timestamp, body).encode()
    offered = given.encode("utf-8", "replace")
    if len(offered) != _SIG_LENGTH or not hmac.compare_digest(expected, offered):
        raise VerificationError("X-Slack-Signature does not match")
