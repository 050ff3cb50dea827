"""Whether a Matrix message addresses the bot (I4).

A message names the bot when its ``m.mentions`` lists the bot's user id, when the
``formatted_body`` has a pill (a ``matrix.to`` link to the bot), or when the plain body
contains the user id or the display name as a word. Ingress strips a *leading* mention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote


def is_mentioned(content: Mapping[str, Any], user_id: str, display_name: str | None) -> bool:
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        ids = mentions.get("user_ids")
        if isinstance(ids, list) and user_id in ids:
            return True
    body = content.get("body")
    body = body if isinstance(body, str) else ""
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and _has_pill(formatted, user_id):
        return True
    if user_id.lower() in body.lower():
        return True
    return bool(display_name) and _names(body, display_name or "")


def _has_pill(formatted: str, user_id: str) -> bool:
    for href in re.findall(r"""href\s*=\s*["']([^"']+)["']""", formatted, re.IGNORECASE):
        target = unquote(href)
        if "matrix.to/#/" in target and target.split("matrix.to/#/", 1)[1].split("?")[0] == (
            user_id
        ):
            return True
    return False


def _names(body: str, name: str) -> bool:
    """``name`` appears in ``body`` as a whole word (case-insensitive)."""
    pattern = rf"(?<![\w@]){re.escape(name)}(?![\w@])"
    return re.search(pattern, body, re.IGNORECASE) is not None
