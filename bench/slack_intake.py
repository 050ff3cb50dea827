"""B2 HTTP intake, Slack half: signed ``event_callback`` → ``POST /webhooks/slack`` vs bare aiohttp.

BENCH.md B2 also asks for "a signed Slack event". The Web half (``POST /api/v1/rooms/...``)
is :mod:`bench.intake`; this module reuses its load generator, process handling and
figures. All processes bind 127.0.0.1 and are stopped (SIGTERM, then SIGKILL) at the end:

* the daemon: ``python -m bot run`` as in :mod:`bench.intake` (echo provider, 50 ms coalesce
  window, durable journal) plus ``[transports.slack]`` in HTTP mode, so the route verifies
  ``X-Slack-Signature`` (HMAC-SHA256 of ``v0:{ts}:{raw body}``) and the timestamp, hands the
  request to the Bolt ``AsyncApp``, whose listener journals the message through ingress
  before the 200 ack;
* a fake Slack Web API (``--fake-api``, its own process) as ``api_base_url``: ``auth.test``
  answers ``{"ok":true,"user_id":"UBOT","bot_id":"BBOT","team_id":"T1"}`` (the daemon asks
  at start), ``chat.postMessage`` ``{"ok":true,"ts":...}`` (the replies of the turns that
  run during the load), anything else ``{"ok":true}``; ``GET /stats`` counts the calls;
* the baseline (``--bare``): a bare aiohttp handler on ``POST /webhooks/slack`` that reads
  the raw body, **verifies the signature and timestamp the same way** (a Slack endpoint that
  skips it is not one anyone may deploy; it costs microseconds), parses the JSON and answers
  200 with an empty body — what Slack needs as an ack;
* the load generator (``--loadgen``): :func:`bench.intake.load`, closed loop, ``C``
  keep-alive connections; every request is a freshly signed ``event_callback`` carrying a
  ``message`` event (``channel_type`` channel) that mentions ``<@UBOT>``, with a unique
  ``ts`` (so a new message, a new ``event_id``) in one of ``CHANNELS`` channels — so the
  turns, their ``chat.postMessage`` replies and journal writes run during the load.

Figures (as :mod:`bench.intake`): per server the best requests/s among the concurrency sweep
whose p99 is under 100 ms, median over ``REPS``; the ratio ours / bare; the ack (HTTP
response) p50/p99 at that load.

Then a retry storm after RELIABILITY.md R8 (``--storm-s 0`` skips it): a fresh daemon with
``[llm.echo] delay_s = 20``; open loop, new events at ``STORM_RATE`` (R8: 500/min), each
delivered again with ``X-Slack-Retry-Num`` 1, 2, 3 at ``STORM_GAP_S`` intervals (Slack waits
1 min and 5 min; compressed here). Latency counts from each request's scheduled time. Figures:
ack p50/p99/max, non-2xx, and the daemon's ``musher_inbound_total`` accepted vs deduped
(each event journalled once, every redelivery answered from the journal). Turns per event
are not counted here (each takes 20 s); the reliability tests check that.

Run alone: ``python -m bench.slack_intake``; full size e.g.
``python -m bench.slack_intake --reps 5 --duration 3 --storm-s 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import math
import random
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import emit, median, percentile, progress, rnd
from bench.intake import (
    WINDOW_MS,
    RequestFactory,
    Server,
    Sweep,
    b2_parser,
    loadgen_main,
    print_result,
    run_loadgen,
    run_params,
    serve_app,
    spread,
    start_child,
    start_daemon,
    sweep_figures,
    sweep_pair,
)

NAME = "http_intake_slack"
MODULE = "bench.slack_intake"
CONCURRENCY = (8, 16, 32, 64)
REPS = 3
DURATION_S = 2.0
CHANNELS = 1024
SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench-token"
BOT_USER = "UBOT"
STORM_RATE = 500 / 60  # events per second (R8)
STORM_S = 10.0
STORM_RETRIES = 3
STORM_GAP_S = 1.0
STORM_LLM_DELAY_S = 20.0
ACK_TARGET = "R8: ack p99 < 300 ms under the retry storm"

SLACK_CONFIG = """
[transports.slack]
enabled = true
mode = "http"
bot_token = "{token}"
signing_secret = "{secret}"
api_base_url = "{api}/api/"
"""

STORM_LLM = """
[llm.echo]
delay_s = {delay}
"""


# --- signed Slack events -------------------------------------------------------------------


def sign(raw: bytes, stamp: str, secret: str = SECRET) -> str:
    """``X-Slack-Signature`` for ``raw`` at ``stamp`` (Slack's published scheme)."""
    base = b"v0:" + stamp.encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_event(channel: str, ts: str, user: str, text: str, event_id: str) -> bytes:
    """The raw body of an ``event_callback`` carrying one channel ``message``."""
    now = int(time.time())
    body = {
        "token": "legacy",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": now,
        "event": {
            "type": "message",
            "channel_type": "channel",
            "user": user,
            "text": text,
            "channel": channel,
            "ts": ts,
            "event_ts": ts,
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def headers_for(raw: bytes, retry: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(raw, stamp),
    }
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return headers


class Events:
    """New messages mentioning the bot, spread over ``CHANNELS`` channels, unique ``ts`` each.

    A random 4-digit prefix in the ``ts`` fraction keeps the load generators of one daemon
    (one process per run) from reusing an ``event_id`` (``<channel>:<ts>``).
    """

    def __init__(self) -> None:
        self.prefix = f"{random.randrange(10_000):04d}"
        self.seq = itertools.count()

    def make(self, w: int, i: int, workers: int) -> bytes:
        n = next(self.seq)
        channel = f"C{spread(w, i, CHANNELS, workers):07d}"
        ts = f"{int(time.time())}.{self.prefix}{n:08d}"
        text = f"<@{BOT_USER}> please have a look at this, message {n}"
        return signed_event(channel, ts, f"U{w % 7:04d}", text, f"Ev{self.prefix}{n:08d}")

    def requests(self) -> RequestFactory:
        def make(w: int, i: int, workers: int) -> tuple[str, bytes, dict[str, str]]:
            raw = self.make(w, i, workers)
            return "/webhooks/slack", raw, headers_for(raw)

        return make


# --- the fake Slack Web API and the bare baseline ------------------------------------------


def _fake_api() -> None:
    """A minimal Slack Web API on ``/api/<method>``; ``GET /stats`` → calls per method."""
    calls: dict[str, int] = {}
    clock = itertools.count(1)

    async def method(request: web.Request) -> web.Response:
        name = request.match_info["method"]
        await request.read()
        calls[name] = calls.get(name, 0) + 1
        if name == "auth.test":
            answer: dict[str, Any] = {
                "ok": True,
                "url": "https://bench.slack.invalid/",
                "team": "bench",
                "user": "musher",
                "team_id": "T1",
                "user_id": BOT_USER,
                "bot_id": "BBOT",
            }
        elif name == "chat.postMessage":
            answer = {"ok": True, "channel": "C0", "ts": f"1900000000.{next(clock):06d}"}
        else:
            answer = {"ok": True}
        return web.json_response(answer)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(calls)

    app = web.Application()
    app.router.add_post("/api/{method}", method)
    app.router.add_get("/stats", stats)
    asyncio.run(serve_app(app))


def _bare_server() -> None:
    """``POST /webhooks/slack``: read, verify signature and timestamp, parse, 200 (empty)."""

    async def post(request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        given = request.headers.get("X-Slack-Signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return web.Response(status=401)
        if not hmac.compare_digest(sign(raw, stamp).encode(), given.encode()):
            return web.Response(status=401)
        body = json.loads(raw)
        if body.get("type") != "event_callback":
            return web.Response(status=400)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/slack", post)
    asyncio.run(serve_app(app))


# --- the retry storm (R8) ------------------------------------------------------------------


async def storm(url: str, rate: float, duration: float, retries: int, gap: float) -> dict[str, Any]:
    """Open loop: event ``k`` at ``k / rate``, redelivered ``retries`` times ``gap`` apart.

    Latency runs from the scheduled time (a slow answer delays nothing else: no coordinated
    omission), so it is what Slack's 3 s timer would see.
    """
    import aiohttp

    loop = asyncio.get_running_loop()
    events = Events()
    count = max(1, math.ceil(rate * duration))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0

    async def deliver(session: aiohttp.ClientSession, at: float, raw: bytes, retry: int) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, at - loop.time()))
        try:
            async with session.post(
                f"{url}/webhooks/slack", data=raw, headers=headers_for(raw, retry)
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, OSError):
            errors += 1
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies.append(loop.time() - at)

    start = loop.time() + 0.2
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        jobs = []
        for k in range(count):
            raw = events.make(k, 0, count)
            at = start + k / rate
            for retry in range(retries + 1):
                jobs.append(deliver(session, at + retry * gap, raw, retry))
        await asyncio.gather(*jobs)
    return {
        "events": count,
        "requests": len(latencies),
        "ack_p50_ms": percentile(latencies, 50) * 1000,
        "ack_p99_ms": percentile(latencies, 99) * 1000,
        "ack_max_ms": max(latencies, default=math.nan) * 1000,
        "statuses": statuses,
        "errors": errors,
    }


_INBOUND = re.compile(r'^musher_inbound_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


def inbound(url: str) -> dict[str, int]:
    """The daemon's ``musher_inbound_total`` by outcome."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {outcome: int(float(value)) for outcome, value in _INBOUND.findall(text)}


def api_calls(api: Server) -> dict[str, int]:
    import httpx

    calls: dict[str, int] = httpx.get(f"{api.url}/stats", timeout=5).json()
    return calls


def _slack_config(api: Server) -> str:
    return SLACK_CONFIG.format(token=BOT_TOKEN, secret=SECRET, api=api.url)


def _run_storm(
    rate: float, duration: float, retries: int, gap: float, delay: float
) -> dict[str, Any]:
    """A fresh daemon with a slow echo provider, the storm's load generator, its figures."""
    with tempfile.TemporaryDirectory(prefix="musher-b2s-") as tmp:
        servers: list[Server] = []
        try:
            servers.append(api := start_child("fake-api", MODULE, "--fake-api"))
            extra = _slack_config(api) + STORM_LLM.format(delay=delay)
            servers.append(ours := start_daemon(Path(tmp), extra))
            progress(f"B2 slack retry storm: {rate * 60:.0f} events/min for {duration:g} s")
            args = ["--rate", str(rate), "--retries", str(retries), "--gap", str(gap)]
            result = run_loadgen(MODULE, ours.url, 0, 0.0, duration, ["--storm", *args])
            result["inbound"] = inbound(ours.url)
        finally:
            for server in reversed(servers):
                server.stop()
    return result


# --- the benchmark -------------------------------------------------------------------------


def run(
    reps: int = REPS,
    concurrency: Sequence[int] = CONCURRENCY,
    duration: float = DURATION_S,
    storm_s: float = STORM_S,
    storm_rate: float = STORM_RATE,
) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, list[Sweep]] = {"ours": [], "bare": []}
    drains: list[float] = []
    journalled: list[float] = []
    replies = 0
    for rep in range(reps):
        with tempfile.TemporaryDirectory(prefix="musher-b2s-") as tmp:
            servers: list[Server] = []
            try:
                servers.append(api := start_child("fake-api", MODULE, "--fake-api"))
                servers.append(ours := start_daemon(Path(tmp), _slack_config(api)))
                servers.append(bare := start_child("bare", MODULE, "--bare"))
                label = f"B2 slack rep {rep + 1}/{reps}"
                sweeps = sweep_pair(
                    MODULE, label, (ours, bare), concurrency, duration, results, drains
                )
                sent = sum(out["sent"] for out in sweeps["ours"].values())
                accepted = inbound(ours.url).get("accepted", 0)
                journalled.append(accepted / sent if sent else math.nan)
                replies += api_calls(api).get("chat.postMessage", 0)
            finally:
                for server in reversed(servers):
                    server.stop()

    figures = sweep_figures(results, concurrency, latency="ack")
    figures["ours_journalled_per_request_sent"] = rnd(median(journalled))
    figures["ours_replies_posted_total"] = replies
    figures["daemon_drain_after_run_s_median"] = rnd(median(drains), 2)
    if storm_s > 0:
        s = _run_storm(storm_rate, storm_s, STORM_RETRIES, STORM_GAP_S, STORM_LLM_DELAY_S)
        figures["storm"] = {
            "events": s["events"],
            "requests": s["requests"],
            "ack_p50_ms": rnd(s["ack_p50_ms"], 2),
            "ack_p99_ms": rnd(s["ack_p99_ms"], 2),
            "ack_max_ms": rnd(s["ack_max_ms"], 2),
            "non_2xx": sum(n for k, n in s["statuses"].items() if not k.startswith("2")),
            "errors": s["errors"],
            "inbound_accepted": s["inbound"].get("accepted", 0),
            "inbound_deduped": s["inbound"].get("deduped", 0),
        }
    params = {
        "endpoint": "POST /webhooks/slack (signed event_callback, message event with <@UBOT>)",
        "ours": (
            "python -m bot run, [transports.slack] mode=http: signature check, Bolt AsyncApp, "
            "ingress journal (WAL, synchronous=FULL) before the 200 ack"
        ),
        "ours_llm_provider": "echo",
        "ours_coalesce_window_ms": WINDOW_MS,
        "fake_slack_api": "own process: auth.test, chat.postMessage (the turns' replies)",
        "channels": CHANNELS,
        "bare": (
            "aiohttp handler: read body, verify X-Slack-Signature (HMAC-SHA256) and timestamp, "
            "parse JSON, 200 empty; own process and port"
        ),
        "loadgen": "separate process, asyncio client, closed loop, keep-alive, unique ts/event",
        "figure": (
            "best rps with p99 < 100 ms over the sweep, median over reps; ratio ours/bare; "
            "ack p50/p99 at that point"
        ),
        "storm": (
            {
                "events_per_min": round(storm_rate * 60, 1),
                "duration_s": storm_s,
                "retries_per_event": STORM_RETRIES,
                "retry_gap_s": STORM_GAP_S,
                "llm_echo_delay_s": STORM_LLM_DELAY_S,
                "loadgen": "open loop, latency from the scheduled send time",
                "target": ACK_TARGET,
            }
            if storm_s > 0
            else "skipped"
        ),
        "host": "127.0.0.1, loadgen, servers and fake API share the machine's 2 cores",
        **run_params(concurrency, duration, reps, started),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = b2_parser(MODULE, DURATION_S, REPS, CONCURRENCY)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fake-api", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=STORM_RATE, help=argparse.SUPPRESS)
    parser.add_argument("--retries", type=int, default=STORM_RETRIES, help=argparse.SUPPRESS)
    parser.add_argument("--gap", type=float, default=STORM_GAP_S, help=argparse.SUPPRESS)
    parser.add_argument(
        "--storm-s", type=float, default=STORM_S, help="retry-storm length (0 = skip)"
    )
    parser.add_argument(
        "--storm-rate", type=float, default=STORM_RATE * 60, help="storm events per minute"
    )
    args = parser.parse_args()
    if args.bare:
        _bare_server()
        return
    if args.fake_api:
        _fake_api()
        return
    if args.loadgen and args.storm:
        print_result(
            asyncio.run(storm(args.loadgen, args.rate, args.duration, args.retries, args.gap))
        )
        return
    if args.loadgen:
        events = Events()
        out = loadgen_main(args, events.requests())
        out["sent"] = next(events.seq)
        print_result(out)
        return
    result = run(args.reps, args.sweep, args.duration, args.storm_s, args.storm_rate / 60)
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
