"""The web page in a real browser: chat commands typed into the page move cards on the board.

Chromium is the system binary (``playwright install`` needs the network), driven by
playwright. Without ``/usr/bin/chromium`` the tests skip, except in CI (``CI=true``), where
``.ci/run`` installs it and a missing browser is a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from pipeline.engine import project_slug
from tests.integration.daemon import DaemonProcess
from tests.integration.pages import WAIT_MS, OpenPage, column, say

MakeDaemon = Callable[..., DaemonProcess]


def test_chat_commands_move_cards_on_the_live_board(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50).start()
    page = open_page(daemon.url)
    expect(page.locator("#board-project")).to_have_text(project_slug(Path.cwd().name))
    expect(page.locator("#board .card")).to_have_count(0)

    say(page, "new story Login page")
    backlog = column(page, "backlog")
    expect(backlog.locator(".card", has_text="#1 Login page")).to_be_visible(timeout=WAIT_MS)
    expect(backlog.locator(".card")).to_contain_text("story")
    expect(backlog.locator(".count")).to_have_text("1")

    say(page, "move 1 coding")
    coding = column(page, "coding")
    expect(coding.locator(".card", has_text="#1 Login page")).to_be_visible(timeout=WAIT_MS)
    expect(backlog.locator(".card")).to_have_count(0)
    expect(backlog.locator(".count")).to_have_text("0")

    say(page, "new bug Logout --depends 1")
    expect(backlog.locator(".card", has_text="#2 Logout")).to_contain_text("waiting on #1")
    say(page, "freeze 1")  # a frozen item stays in its column, with a badge
    expect(coding.locator(".card", has_text="#1 Login page")).to_contain_text("❄️ frozen")

    # Titles are text, never markup.
    say(page, "new story <img src=x onerror=alert(1)>")
    expect(backlog.locator(".card", has_text="#3 <img src=x")).to_be_visible()
    expect(page.locator("#board img")).to_have_count(0)

    # An open page (two SSE streams) does not hold up shutdown.
    assert daemon.terminate(timeout=10) == 0


def test_the_board_follows_the_rooms_switch(make_daemon: MakeDaemon, open_page: OpenPage) -> None:
    daemon = make_daemon(window_ms=50, extra='[projects]\ndefault = "alpha"\n').start()
    assert daemon.post("lobby", "new story Alpha work").status_code == 202
    assert daemon.wait_for("lobby", 1)
    assert daemon.terminate() == 0
    daemon.config.write_text(daemon.config.read_text().replace('"alpha"', '"beta"'))
    daemon.start()  # now both projects exist and rooms default to beta

    page = open_page(daemon.url)
    expect(page.locator("#board-project")).to_have_text("beta")
    say(page, "new story Beta work")
    expect(column(page, "backlog").locator(".card-title")).to_have_text(["#1 Beta work"])

    say(page, "switch alpha")
    expect(page.locator("#board-project")).to_have_text("alpha", timeout=WAIT_MS)
    expect(column(page, "backlog").locator(".card-title")).to_have_text(["#1 Alpha work"])
    say(page, "move 1 coding")
    expect(column(page, "coding").locator(".card", has_text="#1 Alpha work")).to_be_visible()


def test_the_project_picker_switches_the_rooms_project(
    make_daemon: MakeDaemon, open_page: OpenPage, tmp_path: Path
) -> None:
    extra = (
        f'[projects]\ndefault = "alpha"\nroot = "{tmp_path / "projects"}"\n'
        'git_user_name = "Musher Test"\ngit_user_email = "musher@example.org"\n'
    )
    daemon = make_daemon(window_ms=50, extra=extra).start()
    page = open_page(daemon.url)
    picker = page.locator("#project-picker")
    expect(page.locator("#board-project")).to_have_text("alpha")
    expect(picker).to_be_hidden()  # one project: nothing to pick

    say(page, "new project beta")
    expect(picker).to_be_visible(timeout=WAIT_MS)
    expect(picker.locator("option")).to_have_text(["alpha", "beta"])
    expect(picker).to_have_value("alpha")

    picker.select_option("beta")  # sends `switch beta` as the page's user
    expect(page.locator("#board-project")).to_have_text("beta", timeout=WAIT_MS)
    expect(page.locator("#messages .msg.bot").last).to_contain_text("now works on beta")
    expect(picker).to_have_value("beta")
    say(page, "new story Beta work")
    expect(column(page, "backlog").locator(".card-title")).to_have_text(["#1 Beta work"])


def test_the_board_streams_with_the_token_once_the_page_has_it(
    make_daemon: MakeDaemon, open_page: OpenPage
) -> None:
    daemon = make_daemon(window_ms=50, http_extra='token = "s3cret"').start()
    page = open_page(daemon.url, live=False)
    expect(page.locator("#board-note")).to_have_text("The board needs the access token.")
    page.locator("#token").fill("s3cret")
    page.locator("#token-form button").click()
    expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)

    say(page, "new story Behind a token")  # the board's EventSource sends ?token=
    card = column(page, "backlog").locator(".card", has_text="#1 Behind a token")
    expect(card).to_be_visible(timeout=WAIT_MS)
