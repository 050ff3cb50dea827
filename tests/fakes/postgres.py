"""A real PostgreSQL server for the store tests (Debian's ``postgresql`` package).

:func:`start_postgres` runs ``initdb`` into a temp dir and ``pg_ctl`` on a free port of
127.0.0.1 until the block ends (then ``pg_ctl stop -m immediate``). The binaries come from
``$PATH`` or ``/usr/lib/postgresql/*/bin``. PostgreSQL refuses to run as root, so as root
the server runs as ``nobody`` in a directory it owns. :meth:`Postgres.new_schema` gives each
test its own empty schema (cheaper than a database) and the URL that selects it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "musher"


class PostgresMissing(RuntimeError):
    """initdb/pg_ctl are not installed."""


def binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(directory, "pg_ctl").exists() and Path(directory, "initdb").exists():
            return Path(directory)
    raise PostgresMissing("PostgreSQL is not installed (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Postgres:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{USER}"

    def new_schema(self) -> str:
        """Create an empty schema; returns the URL whose connections use it."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url}?options=-csearch_path%3D{name}"

    def new_database(self) -> str:
        """Create an empty database; returns its URL."""
        name = f"d_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def terminate_others(self) -> None:
        """``pg_terminate_backend`` every other connection (a lost-connection fault)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *argv] if os.getuid() == 0 else argv


@contextmanager
def start_postgres(*, fsync: bool = False) -> Iterator[Postgres]:
    """Run a fresh server until the block ends. Without ``fsync`` (the tests' default) a
    commit is durable against a killed client or server process, not a power cut."""
    bin_dir = binaries()
    directory = Path(tempfile.mkdtemp(prefix="musher-pg-"))
    if os.getuid() == 0:
        shutil.chown(directory, "nobody")
    data, port = directory / "data", _free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8",
              "--locale=C.UTF-8", "--no-sync"]  # fmt: skip
    _run(_as_server_user(initdb))
    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=200"
        f" -c fsync={'on' if fsync else 'off'}"
    )
    start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
             str(directory / "server.log"), "-w", "-t", "60", "start"]  # fmt: skip
    try:
        _run(_as_server_user(start))
        with psycopg.connect(f"postgresql://{USER}@127.0.0.1:{port}/postgres") as conn:
            conn.autocommit = True
            conn.execute(f"CREATE DATABASE {USER}")
        yield Postgres(port, directory)
    finally:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        with contextlib.suppress(subprocess.CalledProcessError):
            _run(_as_server_user(stop))
        shutil.rmtree(directory, ignore_errors=True)
