"""The agent panel in a real browser, over a real daemon running the fake agent CLI (hanging):
the card shows its agent running, the header the slots in use, the item panel the agent's
progress lines, and its Stop button (reached by keyboard) sends `stop N` as a chat command,
after which the indicator goes away; a non-admin's Retry gets `start`'s refusal in the chat."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.integration.agent_env import make_repo
from tests.integration.daemon import DaemonProcess
from tests.integration.pages import WAIT_MS, OpenPage, card, column, say
from tests.integration.test_agent_pool import alive
from tests.integration.test_agents_daemon import agents_config, calls, wait
from tests.integration.test_browser_board import USERS

MakeDaemon = Callable[..., DaemonProcess]


def last_bot(page: Page) -> Any:
    return page.locator("#messages .msg.bot").last


def no_agent(running: Any, daemon: DaemonProcess) -> None:
    """The card's agent indicator went away (on failure: what it says and the daemon's log)."""
    try:
        expect(running).to_have_count(0, timeout=WAIT_MS)
    except AssertionError as err:
        shown = running.all_inner_texts()
        daemon.token = "tok-boss-1"
        with daemon.client() as http:
            row = http.get("/api/v1/projects/shop/items/1/agent").text
        raise AssertionError(
            f"{err}\ncard shows {shown}\nagent: {row}\n{daemon.log_text()[-12000:]}"
        ) from None


def test_the_panel_shows_a_running_agent_and_stop_ends_it(
    tmp_path: Path, make_daemon: MakeDaemon, open_page: OpenPage, monkeypatch: Any
) -> None:
    expect.set_options(timeout=WAIT_MS)  # every check waits as long: CI machines get busy
    repo = make_repo(tmp_path / "projects" / "shop")
    (tmp_path / "calls").mkdir()
    monkeypatch.setenv("FAKE_AGENT_DIR", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    daemon = make_daemon(window_ms=50, extra=agents_config(repo) + USERS, agents=True).start()
    page = open_page(daemon.url, token="tok-boss-1")
    say(page, "new story Add a cart")
    slots = page.locator("#agent-slots")
    expect(slots).to_have_text("agents 0/1", timeout=WAIT_MS)
    expect(card(page, "backlog", 1).locator(".card-agent")).to_have_count(0)

    card(page, "backlog", 1).drag_to(column(page, "coding"))  # an agent takes it
    running = card(page, "coding", 1).locator(".card-agent")
    expect(running).to_have_attribute("aria-label", "agent running", timeout=WAIT_MS)
    expect(slots).to_have_text("agents 1/1")
    [first] = wait(lambda: calls(tmp_path / "calls" / "calls.jsonl"))
    height = card(page, "coding", 1).bounding_box()

    card(page, "coding", 1).focus()  # the keyboard alone opens it and reaches Stop
    page.keyboard.press("Enter")
    panel = page.locator("#item-panel")
    expect(panel.locator(".agent-status")).to_have_text("Agent running", timeout=WAIT_MS)
    expect(panel.locator(".agent-facts")).to_contain_text("coder")
    expect(panel.locator(".agent-line").first).to_contain_text("started (new session)")
    expect(page.locator("#item-close")).to_be_focused()
    page.keyboard.press("Tab")
    stop = panel.get_by_role("button", name="Stop")
    expect(stop).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#messages .msg.user").last).to_contain_text("stop 1")
    expect(last_bot(page)).to_contain_text("Stopped the agent on #1", timeout=WAIT_MS)
    no_agent(running, daemon)
    expect(slots).to_have_text("agents 0/1")
    expect(panel.locator(".agent-status")).to_have_text("Agent stopped", timeout=WAIT_MS)
    retry = panel.get_by_role("button", name="Retry")
    expect(retry).to_be_focused()  # the pressed button went away; the keyboard stays here
    assert not alive(first["pid"])
    assert card(page, "coding", 1).bounding_box() == height  # the indicator shifts nothing

    ann = open_page(daemon.url, token="tok-ann-1")  # not an admin: `start` refuses her
    card(ann, "coding", 1).click()
    ann.locator("#item-panel").get_by_role("button", name="Retry").click()
    expect(ann.locator("#messages .msg.user").last).to_contain_text("start 1")
    expect(last_bot(ann)).to_contain_text("for admins only", timeout=WAIT_MS)
    expect(card(ann, "coding", 1).locator(".card-agent")).to_have_count(0)

    retry.click()  # the admin's Retry starts it again
    expect(last_bot(page)).to_contain_text("Started coder on #1", timeout=WAIT_MS)
    expect(running).to_have_attribute("aria-label", "agent running", timeout=WAIT_MS)
    expect(panel.locator(".agent-status")).to_have_text("Agent running", timeout=WAIT_MS)
    say(page, "stop 1")
    expect(last_bot(page)).to_contain_text("Stopped the agent on #1", timeout=WAIT_MS)
    no_agent(running, daemon)
    assert daemon.terminate() == 0
