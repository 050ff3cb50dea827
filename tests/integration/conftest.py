from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.fakes.synapse import Human, Synapse, SynapseMissing, start_synapse, unique


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """One real Synapse for the session (installed on first use; CI=true fails without it)."""
    try:
        with start_synapse(tmp_path_factory.mktemp("synapse")) as hs:
            yield hs
    except SynapseMissing as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Synapse is not available: {err}")


@pytest.fixture
async def alice(synapse: Synapse) -> AsyncIterator[Human]:
    """A fresh person on the session's Synapse, with a real nio client."""
    human = Human(synapse, unique("alice"))
    yield human
    await human.close()


CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; closed (with playwright's driver) at the end."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI=true fails instead")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
