"""The web console's security in a real browser (issue 9 points 1 and 2).

A hostile page cannot drive the daemon:
The page is served from another origin (a second port on 127.0.0.1) and tries what any
web page can do without CORS: a ``no-cors`` fetch POST with a ``text/plain`` JSON body,
a ``text/plain`` form shaped like JSON, and an ordinary form POST. Nothing is journalled
and no command runs: the item it tries to purge is still on the board.

With web users, the page asks for the token once, keeps it, and the rights are the
token's user's whatever name is typed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, expect

from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]

HOSTILE = """<!doctype html>
<title>loading</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="plain" method="POST" action="{api}" enctype="text/plain" target="sink1">
  <input name='{{"sender": "mallory", "text": "purge 1", "pad": "' value='"}}'>
</form>
<form id="urlencoded" method="POST" action="{api}" target="sink2">
  <input name="sender" value="mallory"><input name="text" value="purge 1">
</form>
<script>
const body = JSON.stringify({{sender: "mallory", text: "purge 1"}});
const sent = [
  fetch("{api}", {{mode: "no-cors", method: "POST", body}}),
  fetch("{api}", {{mode: "no-cors", method: "POST", body,
                   headers: {{"Content-Type": "text/plain"}}}}),
  new Promise((done) => {{ document.querySelector("[name=sink1]").onload = done; }}),
  new Promise((done) => {{ document.querySelector("[name=sink2]").onload = done; }}),
];
document.getElementById("plain").submit();
document.getElementById("urlencoded").submit();
Promise.allSettled(sent).then(() => {{ document.title = "done"; }});
</script>
"""


@pytest.fixture
def hostile_site() -> Iterator[Callable[[str], str]]:
    """A second origin serving the hostile page for a daemon URL; returns its URL."""
    pages: dict[str, bytes] = {}

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, name="hostile-site", daemon=True)
    thread.start()

    def serve(daemon_url: str) -> str:
        api = f"{daemon_url}/api/v1/rooms/lobby/messages"
        pages["/"] = HOSTILE.format(api=api).encode()
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_page_from_another_origin_cannot_post_commands(
    make_daemon: MakeDaemon, browser: Browser, hostile_site: Callable[[str], str]
) -> None:
    daemon = make_daemon().start()
    assert daemon.post("lobby", "new story Keep me").status_code == 202
    daemon.wait_for("lobby", 1)
    before = daemon.history("lobby")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(hostile_site(daemon.url))
        expect(page).to_have_title("done", timeout=10_000)
    finally:
        context.close()
    assert daemon.history("lobby") == before
    assert [item["title"] for item in daemon.items()] == ["Keep me"]
    assert "mallory" not in daemon.log_text()


def test_the_page_signs_in_once_and_the_token_decides_the_rights(
    make_daemon: MakeDaemon, browser: Browser
) -> None:
    users = '[transports.web]\nusers = { boss = "tok-boss-1", ann = "tok-ann-1" }\n'
    daemon = make_daemon(window_ms=50, extra=users + 'admins = ["boss"]\n').start()
    daemon.token = "tok-boss-1"
    assert daemon.post("lobby", "new story Keep me").status_code == 202
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{daemon.url}/#room=lobby")
        expect(page.locator("#token-form")).to_be_visible(timeout=10_000)
        page.locator("#token").fill("tok-ann-1")
        page.locator("#token-form button").click()
        expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        page.locator("#sender").fill("boss")
        page.locator("#text").fill("purge 1")
        page.locator("#text").press("Enter")
        bot = page.locator("#messages .msg.bot")
        expect(bot.last).to_contain_text("is for admins only", timeout=10_000)
        expect(page.locator("#sender")).to_have_value("ann")
        page.reload()  # the token is kept: no second prompt
        expect(page.locator("#status")).to_have_text("live", timeout=10_000)
        expect(page.locator("#token-form")).to_be_hidden()
    finally:
        context.close()
    senders = [m["sender"] for m in daemon.history("lobby") if m["role"] == "user"]
    assert senders == ["boss", "ann"]
    assert [i["title"] for i in daemon.items()] == ["Keep me"]
