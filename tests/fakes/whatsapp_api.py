"""A fake WhatsApp: the Meta Graph API's send endpoint and Twilio's Messages API.

    with FakeWhatsApp() as wa:
        ... graph_base_url = wa.url, [twilio] api_base_url = wa.url ...
        wa.fail("graph", 429, retry_after=1.5, code=131056)
        wa.fail("graph", 400, code=131047)          # re-engagement required
        wa.fail("twilio", 502, commit=True)         # sends, then answers 502
        wa.wait(lambda: wa.sent)

``sent`` lists ``(api, to, body)`` of every message delivered; ``calls`` every request with
its arrival time and the status it got. Wrong credentials get the APIs' 401.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BasicAuth, web

from tests.fakes.threaded import ThreadedServer

GRAPH_TOKEN = "EAAfake-graph-token"
PHONE_NUMBER_ID = "106540352242922"
ACCOUNT_SID = "ACfake0000000000000000000000000000"
AUTH_TOKEN = "fake-twilio-auth-token"
FROM_NUMBER = "whatsapp:+14155238886"


@dataclass(frozen=True)
class Call:
    api: str
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    status: int
    path: str


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: float | None = None
    code: int | None = None
    commit: bool = False


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))


class FakeWhatsApp(ThreadedServer):
    def __init__(self) -> None:
        super().__init__("fake-whatsapp")
        self._state = _State()
        self.app.router.add_post("/{version}/{pnid}/messages", self._graph)
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio)

    def fail(self, api: str, status: int, times: int = 1, **kw: Any) -> None:
        """The next ``times`` calls to ``api`` (``graph`` or ``twilio``) fail."""
        with self.lock:
            self._state.faults[api].extend([Fault(status, **kw)] * times)

    @property
    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._state.calls)

    @property
    def sent(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self._state.sent)

    def texts(self) -> list[str]:
        return [body for _, _, body in self.sent]

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {GRAPH_TOKEN}":
            return _graph_error(401, 190, "Invalid OAuth access token")
        body = await request.json()
        fault = self._record("graph", body, request.path)
        if fault is None or fault.commit:
            with self.lock:
                self._state.sent.append(("graph", body["to"], body["text"]["body"]))
        if fault is not None:
            return _graph_error(fault.status, fault.code, "fault", fault.retry_after)
        wamid = f"wamid.FAKE{len(self.sent)}"
        contacts = [{"input": body["to"], "wa_id": body["to"]}]
        return web.json_response(
            {"messaging_product": "whatsapp", "contacts": contacts, "messages": [{"id": wamid}]}
        )

    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        auth = BasicAuth.decode(request.headers.get("Authorization", "Basic Og=="))
        if (auth.login, auth.password) != (ACCOUNT_SID, AUTH_TOKEN):
            return _twilio_error(401, 20003, "Authenticate")
        form = dict(await request.post())
        body = {k: str(v) for k, v in form.items()}
        fault = self._record("twilio", body, request.path)
        if fault is None or fault.commit:
            with self.lock:
                self._state.sent.append(("twilio", body["To"], body["Body"]))
        if fault is not None:
            return _twilio_error(fault.status, fault.code, "fault", fault.retry_after)
        sid = f"SMfake{len(self.sent)}"
        answer = {"sid": sid, "status": "queued", "to": body["To"], "from": body["From"]}
        return web.json_response({**answer, "body": body["Body"]}, status=201)

    def _record(self, api: str, body: dict[str, Any], path: str) -> Fault | None:
        with self.lock:
            faults = self._state.faults.get(api)
            fault = faults.popleft() if faults else None
            self._state.calls.append(
                Call(api, body, time.monotonic(), fault.status if fault else 200, path)
            )
        return fault


def _headers(retry_after: float | None) -> dict[str, str]:
    return {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}


def _graph_error(
    status: int, code: int | None, message: str, retry_after: float | None = None
) -> web.Response:
    if status >= 500:
        return web.Response(
            status=status, text="<html>Bad Gateway</html>", content_type="text/html"
        )
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "fake"}
    return web.json_response({"error": error}, status=status, headers=_headers(retry_after))


def _twilio_error(
    status: int, code: int | None, message: str, retry_after: float | None = None
) -> web.Response:
    if status >= 500:
        return web.Response(
            status=status, text="<html>Bad Gateway</html>", content_type="text/html"
        )
    body = {"code": code, "message": message, "status": status, "more_info": ""}
    return web.json_response(body, status=status, headers=_headers(retry_after))
