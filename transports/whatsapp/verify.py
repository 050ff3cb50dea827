"""WhatsApp webhook signatures, checked on the raw request before anything parses it.

Meta: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``.
Twilio: ``X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + every form key and value,
keys sorted))``, where ``url`` is the public URL Twilio called. Both compare in constant
time; whatever the headers hold, the answer is a :class:`~bot.errors.VerificationError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from config.errors import VerificationError

_META_LENGTH = len("sha256=") + 64
_TWILIO_LENGTH = 28  # base64 of 20 bytes


def meta_signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_meta(app_secret: str, given: str | None, body: bytes) -> None:
    """Raise :class:`VerificationError` unless ``given`` signs ``body``."""
    if not given:
        raise VerificationError("missing X-Hub-Signature-256")
    offered = given.encode("utf-8", "replace")
    expected = meta_signature(app_secret, body).encode()
    if len(offered) != _META_LENGTH or not hmac.compare_digest(expected, offered):
        raise VerificationError("X-Hub-Signature-256 does not match the body")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a form POST of ``params`` to ``url``."""
    data = url + "".join(k + v for k, v in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], given: str | None
) -> None:
    """Raise :class:`VerificationError` unless ``given`` signs ``params`` posted to ``url``."""
    if not given:
        raise VerificationError("missing X-Twilio-Signature")
    offered = given.encode("utf-8", "replace")
    expected = twilio_signature(auth_token, url, params).encode()
    if len(offered) != _TWILIO_LENGTH or not hmac.compare_digest(expected, offered):
        raise VerificationError("X-Twilio-Signature does not match the URL and form")
