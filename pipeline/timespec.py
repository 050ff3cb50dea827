"""When a timer fires and what it does: ``HH:MM`` / ``+30m`` and ``start`` / ``move STAGE`` (T1).

Pure functions: parsing needs the current unix time and the project's time zone, and
returns a unix time; formatting turns a unix time back into words in that zone.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.errors import PipelineError
from pipeline.transitions import MOVE_TARGETS

WHEN_HELP = "HH:MM (in the project's time zone) or +N with s, m, h or d (+30m, +2h, +1d)"
ACTION_HELP = f"start, or move STAGE ({', '.join(MOVE_TARGETS)})"
MAX_AHEAD_S = 366 * 86400

_RELATIVE = re.compile(r"\+(\d{1,8})([smhd])")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or UTC when it is unknown (a project's zone was checked once)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_when(text: str, now: float, tz: ZoneInfo) -> float:
    """The unix time ``text`` names, seen at unix time ``now`` in zone ``tz``.

    ``+30m``, ``+2h``, ``+1d``, ``+45s`` are relative to ``now``. ``HH:MM`` is the next
    time the wall clock in ``tz`` shows it, strictly after ``now`` (today if still ahead,
    else tomorrow); a wall time skipped by a daylight-saving change lands an hour later.

    Raises:
        PipelineError: not one of those forms, zero, or more than a year ahead.
    """
    text = text.strip().lower()
    if match := _RELATIVE.fullmatch(text):
        seconds = int(match[1]) * _UNITS[match[2]]
        if not 0 < seconds <= MAX_AHEAD_S:
            raise PipelineError(f"{text} is out of range: give a time up to a year ahead.")
        return now + seconds
    if match := _CLOCK.fullmatch(text):
        wall = time(int(match[1]), int(match[2]))
        today = datetime.fromtimestamp(now, tz).date()
        for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
            fire_at = datetime.combine(day, wall, tzinfo=tz).timestamp()
            if fire_at > now:
                return fire_at
    raise PipelineError(f"{text!r} is not a time: use {WHEN_HELP}.")


def parse_action(text: str) -> str:
    """The stage a timer action moves its item to: ``start`` → ``coding``, ``move qa`` → ``qa``.

    Raises:
        PipelineError: anything else (the message lists the valid actions).
    """
    words = text.strip().lower().split()
    if words == ["start"]:
        return "coding"
    if len(words) == 2 and words[0] == "move" and words[1] in MOVE_TARGETS:
        return words[1]
    raise PipelineError(f"Actions: {ACTION_HELP}.")


def format_when(fire_at: float, tz: ZoneInfo) -> str:
    """``Tue 3 Jun 09:00 (Europe/London)``; seconds are shown when they are not zero."""
    local = datetime.fromtimestamp(fire_at, tz)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    return f"{local:%a} {local.day} {local:%b} {clock} ({tz.key})"


def format_span(seconds: float) -> str:
    """A short duration: ``45s``, ``5m``, ``2h 5m``, ``3d 4h`` (never negative)."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
