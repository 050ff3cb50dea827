"""The board as a working surface, in a real browser: cards move by drag and by keyboard
(as `move` commands in the chat), refused moves snap back, a card opens its detail with
the op log's history, the cost chart matches `cost`, and admin-only controls follow the
web user's rights."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.fakes.llm_server import FakeLlmServer, Reply
from tests.integration.daemon import DaemonProcess
from tests.integration.pages import WAIT_MS, OpenPage, card, column, say

MakeDaemon = Callable[..., DaemonProcess]
USERS = '[transports.web]\nusers = { boss = "tok-boss-1", ann = "tok-ann-1" }\nadmins = ["boss"]\n'


@contextmanager
def fake_llm() -> Iterator[FakeLlmServer]:
    """The fake OpenAI-compatible server on its own loop and thread (the browser test is
    synchronous)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-llm")
    thread.start()
    server = FakeLlmServer()
    try:
        asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def last_bot(page: Page) -> str:
    return page.locator("#messages .msg.bot").last.inner_text()


def test_drag_and_keys_move_cards_and_a_refused_move_snaps_back(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50).start()
    page = open_page(daemon.url)
    say(page, "new story Login page")
    say(page, "new bug Crash")

    card(page, "backlog", 1).drag_to(column(page, "coding"))
    expect(card(page, "coding", 1)).to_be_visible(timeout=WAIT_MS)
    mine = page.locator("#messages .msg.user").last
    expect(mine).to_contain_text("move 1 coding")
    expect(mine.locator(".sender")).to_have_text("you")
    expect(page.locator("#messages .msg.bot").last).to_contain_text("backlog → coding")

    # Keyboard: focus, one column right, Escape puts it back and sends nothing.
    card(page, "coding", 1).focus()
    page.keyboard.press("ArrowRight")
    expect(card(page, "qa", 1)).to_be_visible()
    page.keyboard.press("Escape")
    expect(card(page, "coding", 1)).to_be_visible()
    expect(page.locator("#messages .msg.user").last).to_contain_text("move 1 coding")
    # Focus, one column right, Enter: moved.
    card(page, "coding", 1).focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("#messages .msg.bot").last).to_contain_text("coding → qa")
    expect(card(page, "qa", 1)).to_be_visible()
    expect(card(page, "qa", 1)).to_be_focused()  # the redraw keeps the keyboard's place

    # Backlog cannot go straight to merge: the card returns, the chat says why.
    card(page, "backlog", 2).drag_to(column(page, "merge"))
    bot = page.locator("#messages .msg.bot").last
    expect(bot).to_contain_text("#2 is in backlog; cannot move to merge", timeout=WAIT_MS)
    expect(bot).to_contain_text("It can go to:")
    expect(card(page, "backlog", 2)).to_be_visible()
    expect(column(page, "merge").locator(".card")).to_have_count(0)
    assert {i["number"]: i["stage"] for i in daemon.items()} == {1: "qa", 2: "backlog"}

    # A badge's action is on the card's menu.
    say(page, "freeze 2")
    frozen = card(page, "backlog", 2)
    expect(frozen).to_contain_text("frozen")
    frozen.get_by_label("Actions for #2").click()
    frozen.get_by_role("button", name="unfreeze").click()
    expect(page.locator("#messages .msg.user").last).to_contain_text("unfreeze 2")
    expect(card(page, "backlog", 2)).not_to_contain_text("frozen", timeout=WAIT_MS)


def test_a_card_opens_its_detail_with_the_history_live(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50).start()
    page = open_page(daemon.url)
    say(page, "new story Login page")
    say(page, "new story Logout --depends 1")
    card(page, "backlog", 1).drag_to(column(page, "coding"))
    expect(card(page, "coding", 1)).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#messages .msg.bot").last).to_contain_text("backlog → coding")

    card(page, "backlog", 2).click()
    panel = page.locator("#item-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#item-title")).to_have_text("#2 Logout")
    expect(panel.locator(".item-deps")).to_contain_text("#1 Login page")
    panel.get_by_role("button", name="#1 Login page").click()  # a dependency's link
    expect(page.locator("#item-title")).to_have_text("#1 Login page")
    history = panel.locator(".history-entry")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("created story 'Login page' in backlog")
    expect(history.nth(1)).to_contain_text("you (web:lobby)")
    expect(history.nth(1)).to_contain_text("stage backlog → coding")
    expect(panel.locator(".item-facts")).to_contain_text("coding")

    say(page, "move 1 qa")  # the open panel follows the item
    expect(history).to_have_count(3, timeout=WAIT_MS)
    expect(history.nth(2)).to_contain_text("stage coding → qa")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(card(page, "qa", 1)).to_be_focused()


def test_the_cost_chart_shows_14_days_and_the_total_cost_reports(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50).start()
    page = open_page(daemon.url)
    say(page, "hello there")  # an echo turn: recorded, at no cost
    say(page, "cost")
    report = last_bot(page)
    total = re.search(r"Last 24 h: (\$[0-9.]+) over (\d+) turns", report)
    assert total is not None
    chart = page.locator('#cost svg[aria-label^="Cost"]')
    expect(chart).to_be_visible()
    expect(chart.locator("rect.cost-bar")).to_have_count(14)
    caption = page.locator("#cost-total")
    expect(caption).to_contain_text(f"Last 24 h: {total[1]} over {total[2]} turns")
    today = chart.locator("rect.cost-bar").last
    with daemon.client() as client:
        days = client.get("/api/v1/cost").json()["days"]
    assert today.get_attribute("data-date") == days[-1]["date"]
    assert float(today.get_attribute("data-usd") or "nan") == float(total[1][1:])


def test_a_non_admin_moves_only_as_move_allows_and_cannot_create_projects(
    make_daemon: MakeDaemon, open_page: OpenPage, tmp_path: Path
) -> None:
    extra = (
        f'[projects]\ndefault = "alpha"\nroot = "{tmp_path / "projects"}"\n'
        'git_user_name = "Musher Test"\ngit_user_email = "musher@example.org"\n'
    )
    daemon = make_daemon(window_ms=50, extra=extra + USERS).start()
    ann = open_page(daemon.url, token="tok-ann-1")
    say(ann, "new story Hers")
    expect(ann.locator("#new-project")).to_be_hidden()
    card(ann, "backlog", 1).drag_to(column(ann, "done"))
    expect(ann.locator("#messages .msg.bot").last).to_contain_text(
        "cannot move to done", timeout=WAIT_MS
    )
    expect(card(ann, "backlog", 1)).to_be_visible()
    card(ann, "backlog", 1).drag_to(column(ann, "coding"))  # what `move` allows her
    expect(card(ann, "coding", 1)).to_be_visible(timeout=WAIT_MS)
    expect(ann.locator("#messages .msg.bot").last).to_contain_text("backlog → coding")
    say(ann, "new project sneaky")
    expect(ann.locator("#messages .msg.bot").last).to_contain_text("is for admins only")

    boss = open_page(daemon.url, token="tok-boss-1")
    boss.locator("#new-project").click()
    boss.locator("#new-project-name").fill("beta")
    boss.locator("#new-project-name").press("Enter")
    expect(boss.locator("#messages .msg.user").last).to_contain_text("new project beta")
    picker = boss.locator("#project-picker")
    expect(picker.locator("option")).to_have_text(["alpha", "beta"], timeout=WAIT_MS)
    daemon.token = "tok-boss-1"
    with daemon.client() as client:
        projects = client.get("/api/v1/projects").json()["projects"]
    assert sorted(p["name"] for p in projects) == ["alpha", "beta"]


def test_on_a_phone_the_board_stacks_and_live_updates_shift_nothing(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50).start()
    page = open_page(daemon.url, width=390, height=844)
    board, chat = page.locator("#board").bounding_box(), page.locator("#chat").bounding_box()
    assert board is not None and chat is not None
    assert board["y"] + board["height"] <= chat["y"] + 1  # the board stacks above the chat
    columns = page.locator("#board-columns").bounding_box()
    assert daemon.post("lobby", "new story From elsewhere").status_code == 202
    expect(card(page, "backlog", 1)).to_be_visible(timeout=WAIT_MS)  # an SSE frame
    assert page.locator("#board-columns").bounding_box() == columns

    card(page, "backlog", 1).focus()  # the keyboard alone opens and closes the detail
    page.keyboard.press("Enter")
    panel = page.locator("#item-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#item-close")).to_be_focused()
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.keyboard.press("Enter")  # on the close button
    expect(panel).to_be_hidden()
    expect(card(page, "backlog", 1)).to_be_focused()


def test_the_cost_chart_shows_what_the_tests_turns_cost(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    with fake_llm() as llm:
        llm.push(Reply(chunks=("Sure.",), cost_usd=0.0125), Reply(chunks=("Done.",), cost_usd=0.5))
        daemon = make_daemon(window_ms=50)
        config = daemon.config.read_text().replace('[llm]\nprovider = "echo"\n', "")
        daemon.config.write_text(
            config + f'\n[llm]\nprovider = "openai"\n[llm.openai]\nbase_url = "{llm.openai_url}"'
            '\napi_key = "k-1"\n'
        )
        page = open_page(daemon.start().url)
        say(page, "plan the login page")
        say(page, "and the logout")
        chart = page.locator('#cost svg[aria-label^="Cost"]')
        expect(chart).to_have_attribute("aria-label", re.compile(r"\$0\.5125$"), timeout=WAIT_MS)
        assert chart.locator("rect.cost-bar").last.get_attribute("data-usd") == "0.5125"
        expect(page.locator("#cost-total")).to_contain_text("Last 24 h: $0.5125 over 2 turns")
        say(page, "cost")
        assert "Last 24 h: $0.5125 over 2 turns" in last_bot(page)
