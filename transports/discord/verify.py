"""Discord interaction signatures: Ed25519 over ``timestamp + body`` (PyNaCl).

Checked on the raw bytes before anything parses the body. Whatever the headers hold —
missing, non-hex, wrong length, non-numeric or skewed timestamps — the answer is a
:class:`~bot.errors.VerificationError`, never another exception.
"""

from __future__ import annotations

from collections.abc import Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from config.errors import VerificationError

WINDOW_S = 300  # a request older (or newer) than five minutes is a replay
_MAX_TS_DIGITS = 12
_SIG_HEX = 128


def verify_key(public_key_hex: str) -> VerifyKey:
    """The application's key; raises ``ValueError`` unless it is 64 hex digits."""
    raw = bytes.fromhex(public_key_hex)
    if len(raw) != 32:
        raise ValueError("a Discord public key is 32 bytes (64 hex digits)")
    return VerifyKey(raw)


def verify(
    key: VerifyKey,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: Callable[[], float],
) -> None:
    """Raise :class:`VerificationError` unless ``signature`` signs ``timestamp + body``.

    The timestamp must be a Unix time within :data:`WINDOW_S` seconds of ``now()``.
    """
    if not timestamp or not signature:
        raise VerificationError("missing X-Signature-Timestamp or X-Signature-Ed25519")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TS_DIGITS):
        raise VerificationError("X-Signature-Timestamp is not a Unix time")
    if abs(now() - int(timestamp)) > WINDOW_S:
        raise VerificationError("X-Signature-Timestamp is outside the five-minute window")
    if len(signature) != _SIG_HEX or not signature.isascii():
        raise VerificationError("X-Signature-Ed25519 is not 64 bytes of hex")
    try:
        key.verify(timestamp.encode() + body, bytes.fromhex(signature))
    except (BadSignatureError, ValueError):
        raise VerificationError("X-Signature-Ed25519 does not match") from None
