"""Time zones are configuration, read at every start (N2): a project's own
``.musher/project.toml`` ``timezone`` wins, else ``[projects] timezone`` for the default
project, else the zone the project was registered with. Timers' ``HH:MM`` and every time
shown for the project use it, and the replies name it."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.engine import Engine

log = logging.getLogger("musher")

PROJECT_FILE = Path(".musher") / "project.toml"


async def apply_zones(engine: Engine, default_project: str, default_zone: str) -> None:
    """Tell ``engine`` the zone in effect for each project (see the module docstring)."""
    for record in await engine.projects():
        zone = await asyncio.to_thread(file_zone, Path(record.path) / PROJECT_FILE)
        if zone is None and record.name == default_project:
            zone = default_zone
        if zone is not None and zone != record.timezone:
            log.info("project %s: time zone %s (was %s)", record.name, zone, record.timezone)
            engine.set_zone(record.name, zone)


def file_zone(path: Path) -> str | None:
    """``timezone`` of a project's ``project.toml``; None when absent or unusable (logged)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        log.warning("%s: cannot read it (%s); its timezone is ignored", path, err)
        return None
    zone = data.get("timezone")
    if zone is None:
        return None
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("%s: timezone %r is not an IANA time zone; ignored", path, zone)
        return None
    return str(zone)
