"""The HTTP edge of a real daemon: Host and origin rules, web identity, bad input, bounded
connections (issue 9 points 1-4), all over real sockets against ``musher run``."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.daemon import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
MESSAGES = "/api/v1/rooms/lobby/messages"
JSON = {"Content-Type": "application/json"}


def quiet_log(daemon: DaemonProcess) -> None:
    """No traceback and no ERROR line: every refusal was an ordinary answer."""
    log = daemon.log_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_requests_for_other_hosts_are_refused_on_every_route(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    port = urlsplit(daemon.url).port
    with daemon.client() as client:
        for path in ("/", "/healthz", MESSAGES, "/api/v1/rooms/lobby/events", "/api/v1/projects"):
            response = client.get(path, headers={"Host": f"evil.example:{port}"})
            assert response.status_code == 421, path
            assert "public_hosts" in response.json()["error"]
        posted = client.post(
            MESSAGES, json={"sender": "a", "text": "purge 1"}, headers={"Host": "evil.example"}
        )
        assert posted.status_code == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200
    assert daemon.history("lobby") == []


def test_a_public_host_is_served_when_configured(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra='public_hosts = ["musher.example.org"]').start()
    with daemon.client() as client:
        ok = client.get(MESSAGES, headers={"Host": "musher.example.org"})
        assert ok.status_code == 200
        assert client.get(MESSAGES, headers={"Host": "other.example.org"}).status_code == 421


def test_cross_site_posts_run_nothing(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra='allowed_origins = ["https://console.example.org"]').start()
    body = '{"sender": "a", "text": "ambient on"}'
    with daemon.client() as client:
        plain = client.post(MESSAGES, content=body, headers={"Content-Type": "text/plain"})
        form = client.post(MESSAGES, data={"sender": "a", "text": "ambient on"})
        none = client.post(MESSAGES, content=body)
        foreign = client.post(MESSAGES, content=body, headers={**JSON, "Origin": "http://x.org"})
        null = client.post(MESSAGES, content=body, headers={**JSON, "Origin": "null"})
        assert [r.status_code for r in (plain, form, none, foreign, null)] == [
            415,
            415,
            415,
            403,
            403,
        ]
        assert "application/json" in plain.json()["error"]
        assert daemon.history("lobby") == []
        own = client.post(MESSAGES, content=body, headers={**JSON, "Origin": daemon.url})
        listed = client.post(
            MESSAGES,
            content=body.replace("ambient on", "ambient off"),
            headers={**JSON, "Origin": "https://console.example.org"},
        )
        assert (own.status_code, listed.status_code) == (202, 202)
        # webhooks are signed by their platform: the JSON rule is not theirs (404: none here)
        assert client.post("/webhooks/slack", content=b"x=1").status_code == 404
    assert len(daemon.wait_for("lobby", 2)) == 2
    quiet_log(daemon)


def test_authorization_needs_the_bearer_scheme(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra='token = "s3cret"').start()
    with daemon.client() as client:
        for header in ("s3cret", "Basic s3cret", "Bearer", "Bearer s3cretx", "Token s3cret"):
            response = client.get(MESSAGES, headers={"Authorization": header})
            assert response.status_code == 401, header
        assert client.get(MESSAGES, headers={"Authorization": "bearer s3cret"}).status_code == 200


USERS = """
[transports.web]
users = { boss = "tok-boss-1", ann = "sha256:{ann}" }
admins = ["boss"]
"""


def test_web_rights_come_from_the_token_never_from_the_body(make_daemon: MakeDaemon) -> None:
    import hashlib

    ann_hash = hashlib.sha256(b"tok-ann-1").hexdigest()
    daemon = make_daemon(
        window_ms=100,
        http_extra='token = "read-only-1"',
        extra=USERS.replace("{ann}", ann_hash),
    ).start()
    daemon.token = "tok-boss-1"
    boss = daemon.client()
    ann = daemon.client(headers={"Authorization": "Bearer tok-ann-1"})
    shared = daemon.client(headers={"Authorization": "Bearer read-only-1"})
    with boss, ann, shared:
        assert boss.post(MESSAGES, json={"text": "new story Keep me"}).status_code == 202
        daemon.wait_for("lobby", 1)
        for sender in ("boss", "boss ", " boss", "BOSS"):
            posted = ann.post(MESSAGES, json={"sender": sender, "text": "purge 1"})
            assert posted.json()["sender"] == "ann"
        assert shared.post(MESSAGES, json={"sender": "boss", "text": "purge 1"}).status_code == 403
        assert shared.get(MESSAGES).status_code == 200  # the shared token may read
        replies = daemon.wait_for("lobby", 5)
        assert replies[1:] == ["Sorry, `purge` is for admins only."] * 4
        assert [i["title"] for i in daemon.items()] == ["Keep me"]
        senders = {m["sender"] for m in daemon.history("lobby") if m["role"] == "user"}
        assert senders == {"boss", "ann"}
        anonymous = httpx.get(f"{daemon.url}{MESSAGES}")
        assert anonymous.status_code == 401


BAD_BODIES: list[bytes] = [
    b'{"sender": "a", "text": "\\ud800 lone"}',
    b'{"sender": "\\udfff", "text": "x"}',
    b'{"sender": "a", "text": "x", "deep": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"sender": "a", "text": "x", "deep": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}",
    b'{"sender": "a", "text": "x", "n": NaN}',
    b'{"sender": "a", "text": "x", "n": -Infinity}',
    b'{"sender": "a", "text": "x", "n": ' + b"1" * 5000 + b"}",
    b'{"sender": "a", "text": "caf\xe9"}',
    '{"sender": "a", "text": "x"}'.encode("utf-16"),
    b'{"sender": "a\\u0000b", "text": "x"}',
    b'{"sender": "a", "text": "x\\u0000y"}',
    b'{"sender": "a\\u202eb", "text": "x"}',
    b'{"sender": "a", "text": "status \\u2066x"}',
    b'{"sender": "a", "text": "x", "id": "a\\u0000"}',
]


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_bad_input_is_a_4xx_and_never_stored(make_daemon: MakeDaemon, token: str | None) -> None:
    daemon = make_daemon(http_extra=f'token = "{token}"' if token else "").start()
    daemon.token = token
    huge = str(2**63)
    with daemon.client() as client:
        for body in BAD_BODIES:
            response = client.post(MESSAGES, content=body, headers=JSON)
            assert response.status_code == 400, (body[:60], response.text)
            assert response.json()["error"]
        for after in (huge, str(2**64), "9" * 5000, "١٢", "1_0", "-1", "+5"):
            response = client.get(MESSAGES, params={"after": after})
            events = client.get(
                "/api/v1/rooms/lobby/events", headers={"Last-Event-ID": after.encode()}
            )
            assert response.status_code == 400 and events.status_code == 400, after
        for path in ("/api/v1/projects/%ED%A0%80/items", "/api/v1/rooms/%00/project"):
            assert client.get(path).status_code in (400, 404), path
    assert daemon.history("lobby") == []
    quiet_log(daemon)


def test_sse_streams_are_capped_per_room_and_a_leaving_client_is_quiet(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(http_extra="max_streams_per_room = 2").start()
    first, second = daemon.events("lobby"), daemon.events("lobby")
    assert next(first) == ("comment", None) and next(second) == ("comment", None)
    with daemon.client() as client:
        refused = client.get("/api/v1/rooms/lobby/events")
        assert refused.status_code == 429
        assert "limit 2" in refused.json()["error"]
        with client.stream("GET", "/api/v1/rooms/other/events") as other:
            assert other.status_code == 200  # the cap is per room
    first.close()
    second.close()  # both clients leave; the next writes find them gone
    deadline = time.monotonic() + 20
    while True:
        daemon.post("lobby", "help")
        with (
            daemon.client(timeout=httpx.Timeout(10, read=30)) as client,
            client.stream("GET", "/api/v1/rooms/lobby/events") as third,
        ):
            if third.status_code == 200:
                break
        assert time.monotonic() < deadline, "the streams' slots were never released"
        time.sleep(0.2)
    quiet_log(daemon)


def _slow_client(daemon: DaemonProcess, head: bytes, trickle: bytes) -> bool:
    """Send ``head``, then ``trickle`` a byte at a time every 0.25 s; whether the server
    closed the connection before the trickle ran out."""
    url = urlsplit(daemon.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(head)
        sock.settimeout(0.25)
        for byte in trickle:
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                answer = None
            if answer == b"" or (answer and b"408" in answer.split(b"\r\n", 1)[0]):
                return True
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return True
    return False


def test_slow_clients_are_disconnected(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(http_extra="read_timeout_s = 1.0").start()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    assert _slow_client(daemon, head, b"X-Slow: " + b"a" * 60)
    body_head = (
        b"POST /api/v1/rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    assert _slow_client(daemon, body_head, b'{"sender": "a", "text": "' + b"x" * 60)
    with daemon.client() as client:
        assert client.get("/healthz").status_code == 200
    assert daemon.history("lobby") == []
    quiet_log(daemon)
