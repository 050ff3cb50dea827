from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import DaemonProcess


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
