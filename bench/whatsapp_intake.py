"""B2 HTTP intake, WhatsApp half: a signed Meta webhook → ``POST /webhooks/whatsapp`` vs bare.

BENCH.md B2 asks for each webhook against a bare handler that checks the same signature.
Reuses :mod:`bench.intake`'s load generator, process handling and figures; the Twilio
webhook (:mod:`bench.twilio_intake`) runs through this module's :func:`run` and
:func:`webhook_main` with its own :class:`Webhook`. All processes bind 127.0.0.1 and are
stopped (SIGTERM, then SIGKILL) at the end:

* the daemon: ``python -m bot run`` (echo provider, 50 ms coalesce window, durable
  journal) with ``[transports.whatsapp]`` on the Meta provider: the route reads the raw
  body, verifies ``X-Hub-Signature-256`` (HMAC-SHA256), parses the whole payload, records
  the sender's 24-hour window and journals the message through ingress before the 200;
* a fake Graph API (``--fake-api``, its own process) as ``graph_base_url``, answering the
  sends of the turns that run during the load; ``GET /stats`` counts them;
* the baseline (``--bare``): a bare aiohttp handler on ``POST /webhooks/whatsapp`` that
  reads the raw body, verifies the same HMAC, parses the JSON and answers 200;
* the load generator (``--loadgen``): :func:`bench.intake.load`, closed loop, keep-alive;
  every request is a freshly signed Cloud API delivery with one text message (a unique
  ``wamid``) from one of ``SENDERS`` numbers.

Figures (as :mod:`bench.intake`): per server the best requests/s of the concurrency sweep
whose p99 is under 100 ms, median over ``REPS``; the ratio ours / bare.

Run alone: ``python -m bench.whatsapp_intake`` (``--reps 5 --duration 3`` for full size).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import emit, median, rnd
from bench.intake import (
    RequestFactory,
    Server,
    Sweep,
    b2_parser,
    loadgen_main,
    print_result,
    run_params,
    serve_app,
    spread,
    start_child,
    start_daemon,
    sweep_figures,
    sweep_pair,
)

CONCURRENCY = (8, 16, 32, 64)
REPS = 3
DURATION_S = 2.0
SENDERS = 1024
APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "106540352242922"


@dataclass(frozen=True)
class Webhook:
    """What one WhatsApp provider's B2 run needs: its names, the daemon's config (a format
    string taking ``api``, the fake API's URL) and what its three kinds of process serve
    or send (each a function, so that only the process that needs it builds it)."""

    name: str
    module: str
    config: str
    params: dict[str, str]
    requests: Callable[[], RequestFactory]
    bare: Callable[[], web.Application]
    fake_api: Callable[[], web.Application]


def signature(raw: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()


def sender_number(w: int, i: int, workers: int) -> str:
    """The sender (of ``SENDERS``) of load-generator worker ``w``'s ``i``-th request."""
    return f"4477009{spread(w, i, SENDERS, workers):05d}"


class Deliveries:
    """Signed Cloud API deliveries, one text message each, unique ``wamid`` per request."""

    def __init__(self) -> None:
        self.prefix = f"{random.randrange(10**6):06d}"
        self.seq = itertools.count()

    def make(self, w: int, i: int, workers: int) -> bytes:
        n = next(self.seq)
        sender = sender_number(w, i, workers)
        message = {
            "from": sender,
            "id": f"wamid.BENCH{self.prefix}{n:09d}",
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": f"please have a look at this, message {n}"},
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Bench"}, "wa_id": sender}],
            "messages": [message],
        }
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}
            ],
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def requests(self) -> RequestFactory:
        def make(w: int, i: int, workers: int) -> tuple[str, bytes, dict[str, str]]:
            raw = self.make(w, i, workers)
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature(raw)}
            return "/webhooks/whatsapp", raw, headers

        return make


def counting_api(
    route: str, answer: Callable[[int], tuple[int, dict[str, Any]]]
) -> web.Application:
    """A fake provider API: ``POST route`` answers ``answer(n)`` (status, JSON) for the
    ``n``-th send; ``GET /stats`` says how many sends there were (``{"messages": n}``)."""
    count = {"messages": 0}

    async def send(request: web.Request) -> web.Response:
        await request.read()
        count["messages"] += 1
        status, body = answer(count["messages"])
        return web.json_response(body, status=status)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(count)

    app = web.Application()
    app.router.add_post(route, send)
    app.router.add_get("/stats", stats)
    return app


def _graph_api() -> web.Application:
    """``POST /{version}/{pnid}/messages`` → a message id."""

    def answer(n: int) -> tuple[int, dict[str, Any]]:
        return 200, {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.S{n}"}]}

    return counting_api("/{version}/{pnid}/messages", answer)


def _bare_meta() -> web.Application:
    """``POST /webhooks/whatsapp``: read, verify the HMAC, parse, 200."""

    async def post(request: web.Request) -> web.Response:
        raw = await request.read()
        given = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(signature(raw).encode(), given.encode()):
            return web.Response(status=401)
        body = json.loads(raw)
        if body.get("object") != "whatsapp_business_account":
            return web.Response(status=400)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", post)
    return app


META = Webhook(
    name="http_intake_whatsapp",
    module="bench.whatsapp_intake",
    config=f"""
[transports.whatsapp]
enabled = true
provider = "meta"

[transports.whatsapp.meta]
access_token = "bench-token"
phone_number_id = "{PHONE_NUMBER_ID}"
app_secret = "{APP_SECRET}"
verify_token = "bench-verify"
graph_base_url = "{{api}}"
""",
    params={
        "endpoint": "POST /webhooks/whatsapp (signed Cloud API delivery, one text message)",
        "ours": (
            "python -m bot run, [transports.whatsapp] provider=meta: HMAC check on the raw "
            "body, whole-payload parse, 24-hour window record, ingress journal before the 200"
        ),
        "bare": "aiohttp handler: read body, verify X-Hub-Signature-256, parse JSON, 200",
    },
    requests=lambda: Deliveries().requests(),
    bare=_bare_meta,
    fake_api=_graph_api,
)


def sent_replies(api: Server) -> int:
    import httpx

    return int(httpx.get(f"{api.url}/stats", timeout=5).json()["messages"])


def run(hook: Webhook, reps: int, concurrency: Sequence[int], duration: float) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, list[Sweep]] = {"ours": [], "bare": []}
    drains: list[float] = []
    replies = 0
    for rep in range(reps):
        with tempfile.TemporaryDirectory(prefix="musher-b2w-") as tmp:
            servers: list[Server] = []
            try:
                servers.append(api := start_child("fake-api", hook.module, "--fake-api"))
                servers.append(ours := start_daemon(Path(tmp), hook.config.format(api=api.url)))
                servers.append(bare := start_child("bare", hook.module, "--bare"))
                label = f"B2 {hook.name} rep {rep + 1}/{reps}"
                sweep_pair(hook.module, label, (ours, bare), concurrency, duration, results, drains)
                replies += sent_replies(api)
            finally:
                for server in reversed(servers):
                    server.stop()
    figures = sweep_figures(results, concurrency)
    figures["ours_replies_sent_total"] = replies
    figures["daemon_drain_after_run_s_median"] = rnd(median(drains), 2)
    params = {**hook.params, "senders": SENDERS, **run_params(concurrency, duration, reps, started)}
    return {"bench": hook.name, "params": params, "figures": figures}


def webhook_main(hook: Webhook) -> None:
    """A WhatsApp B2 module's entry: the whole run, or (hidden flags) one of its processes."""
    parser = b2_parser(hook.module, DURATION_S, REPS, CONCURRENCY)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fake-api", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        asyncio.run(serve_app(hook.bare()))
    elif args.fake_api:
        asyncio.run(serve_app(hook.fake_api()))
    elif args.loadgen:
        print_result(loadgen_main(args, hook.requests()))
    else:
        result = run(hook, args.reps, args.sweep, args.duration)
        emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    webhook_main(META)
