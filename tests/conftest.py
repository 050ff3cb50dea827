"""Fixtures shared by the tests: daemons, fakes, and the store backends (K1)."""

from __future__ import annotations

import gc
import os
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.postgres import Postgres, PostgresMissing, binaries, start_postgres
from tests.fakes.slack_api import FakeSlack
from tests.fakes.whatsapp_api import FakeWhatsApp
from tests.integration.daemon import DaemonProcess

LEAK_CHECK = os.environ.get("MUSHER_LEAK_CHECK") == "1"


@pytest.fixture(autouse=True)
def _leak_check() -> Iterator[None]:
    """With ``MUSHER_LEAK_CHECK=1``: a test that leaves a socket, file or transport for the
    garbage collector fails itself (and names where it was made when the test process runs
    with ``-X tracemalloc=25``, which its daemons do not inherit). Without it, the
    collector's ``ResourceWarning`` fails whichever later test it happens to run in."""
    yield
    if not LEAK_CHECK:
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    leaks = [_leak(w) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, "left for the garbage collector:\n" + "\n".join(leaks)


def _leak(warning: warnings.WarningMessage) -> str:
    traced = warning.source is not None and tracemalloc.is_tracing()
    made = tracemalloc.get_object_traceback(warning.source) if traced else None
    return f"{warning.message}" + ("\n" + "\n".join(made.format()) if made else "")


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Build (not start) daemons in a temp dir; every one is killed at the end of the test."""
    made: list[DaemonProcess] = []

    def make(**kwargs: object) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path / f"d{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.kill()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack (Web API, Socket Mode, response URLs) on 127.0.0.1, stopped after."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_discord() -> Iterator[FakeDiscord]:
    """A fake Discord (REST and gateway) on 127.0.0.1, stopped after."""
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def fake_whatsapp() -> Iterator[FakeWhatsApp]:
    """A fake Graph API and Twilio Messages API on 127.0.0.1, stopped after."""
    with FakeWhatsApp() as fake:
        yield fake


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL for the whole session (stopped at its end). Missing binaries skip
    the tests that use it, or fail them with ``CI=true``."""
    try:
        binaries()
    except PostgresMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with start_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store on each backend: a file in ``tmp_path``, or a schema
    of its own on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'musher.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.new_schema()
