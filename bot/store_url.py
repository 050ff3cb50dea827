"""``[store] url`` → an open database of the right backend (K1).

``sqlite:///<path>`` (a relative path after the three slashes, an absolute one after four:
``sqlite:////srv/musher.db``) opens :class:`bot.db.Database`; ``postgresql://…`` (or
``postgres://…``) opens :class:`bot.pgdb.PgDatabase`. No URL means the data dir's
``musher.db``.
"""

from __future__ import annotations

from pathlib import Path

from bot.db import Database, Db
from config.base import redact_url
from config.errors import ConfigError

SQLITE = "sqlite:///"
POSTGRES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names, or None for another kind of URL."""
    return Path(url.removeprefix(SQLITE)) if url.startswith(SQLITE) else None


def default_url(data_dir: Path) -> str:
    """The URL of the data dir's own database."""
    return SQLITE + str(data_dir / "musher.db")


async def open_db(url: str | None, data_dir: Path, schema: str = "") -> Db:
    """Open the database ``url`` names (creating tables from ``schema``).

    Raises:
        ConfigError: the URL is of no backend musher has.
        StoreUnavailable: a PostgreSQL server cannot be reached or refused the login.
    """
    url = url or default_url(data_dir)
    path = sqlite_path(url)
    if path is not None:
        return await Database.open(path, schema)
    if url.startswith(POSTGRES):
        from bot.pgdb import PgDatabase  # the driver loads only when it is used

        return await PgDatabase.open(url, data_dir, schema)
    raise ConfigError([f"store.url: {redact_url(url)}: not sqlite:/// nor postgresql://"])
