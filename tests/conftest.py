"""Fixtures shared by the integration and reliability tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.discord_api import FakeDiscord
from tests.fakes.slack_api import FakeSlack
from tests.fakes.whatsapp_api import FakeWhatsApp
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
