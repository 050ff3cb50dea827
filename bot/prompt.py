"""The prompt of one batch (D4): every message in order with its sender."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages import QueuedText


def build_prompt(batch: Sequence[QueuedText], reminder_lines: Sequence[str] = ()) -> str:
    """``alice: text`` paragraphs separated by a blank line, after an optional audit block.

    ``reminder_lines`` (pipeline events since the room's last turn) are prepended once as a
    ``<system-reminder>`` block.
    """
    body = "\n\n".join(f"{m.sender}: {m.text}" for m in batch)
    if not reminder_lines:
        return body
    reminder = "\n".join(reminder_lines)
    return f"<system-reminder>\n{reminder}\n</system-reminder>\n\n{body}"
