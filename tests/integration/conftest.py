from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fakes.synapse import Human, Synapse, SynapseMissing, start_synapse, unique
from tests.integration.pages import WAIT_MS, OpenPage


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


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Open the daemon's page (and wait until it is live); fails the test on any uncaught
    script error. ``token`` is stored as the page's access token before it loads."""
    errors: list[str] = []
    contexts = []

    def open_(
        url: str, live: bool = True, token: str | None = None, width: int = 1280, height: int = 800
    ) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        if token is not None:
            context.add_init_script(f"localStorage.setItem('musher.token', {token!r})")
        page = context.new_page()
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(f"{url}/#room=lobby")
        if live:
            expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == []
