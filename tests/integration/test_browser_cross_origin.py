"""A hostile page in a real browser cannot drive the daemon (issue 9 point 1).

The page is served from another origin (a second port on 127.0.0.1) and tries what any
web page can do without CORS: a ``no-cors`` fetch POST with a ``text/plain`` JSON body,
a ``text/plain`` form shaped like JSON, and an ordinary form POST. Nothing is journalled
and no command runs: the item it tries to purge is still on the board.
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
    with daemon.client() as client:
        [project] = client.get("/api/v1/projects").json()["projects"]
        items = client.get(f"/api/v1/projects/{project['name']}/items").json()["items"]
    assert [item["title"] for item in items] == ["Keep me"]
    assert "mallory" not in daemon.log_text()
