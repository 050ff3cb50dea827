"""B2 HTTP intake, Discord half: a signed interaction → ``POST /webhooks/discord`` vs bare.

BENCH.md B2 asks for each webhook against a bare handler that checks the same signature.
Reuses :mod:`bench.intake`'s load generator, process handling and figures. All servers
bind 127.0.0.1 and are stopped at the end:

* the daemon: ``python -m bot run`` (echo provider, durable journal) with
  ``[transports.discord]`` pointed at a fake Discord (REST and gateway,
  ``tests/fakes/discord_api.py``, served by this process) and its ``public_key`` set, so the
  interactions endpoint is on. Each request is ``/musher line:status`` from one of
  ``CHANNELS`` channels: the route reads the raw body, verifies the Ed25519 signature over
  timestamp + body, parses the interaction, journals the command through ingress, runs it
  and answers with its reply (type 4), all inside the one HTTP exchange;
* the baseline (``--bare``): a bare aiohttp handler that reads the body, verifies the same
  signature, parses the JSON and answers a type-4 message;
* the load generator (``--loadgen``): :func:`bench.intake.load`, closed loop, keep-alive;
  every request is a freshly signed interaction with a unique id, from a template the bench
  writes (the fake's own interaction JSON).

Figures (as :mod:`bench.intake`): per server the best requests/s of the concurrency sweep
whose p99 is under 100 ms, median over ``REPS``; the CPU per request; the ratio ours / bare.

Run alone: ``python -m bench.discord_intake`` (``--reps 5 --duration 3`` for full size).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bench.common import emit
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
from tests.fakes.discord_api import TOKEN, FakeDiscord
from transports.discord.commands import LINE, MAIN

NAME = "http_intake_discord"
MODULE = "bench.discord_intake"
CONCURRENCY = (8, 16, 32, 64)
REPS = 3
DURATION_S = 2.0
CHANNELS = 64
ID = "1000000000000000000"
"""The interaction id in the template, replaced by a unique one in every request."""

CONFIG = """
[transports.discord]
enabled = true
bot_token = "{token}"
application_id = "{app}"
public_key = "{public_key}"
api_base_url = "{api}"
gateway_url = "{gateway}"
guilds = ["{guild}"]
"""


def template(fake: FakeDiscord) -> str:
    """``/musher line:status`` as the fake would send it, with :data:`ID` as its id and in
    its token; the channel id is ``{channel}``."""
    option = {"name": LINE, "type": 3, "value": "status"}
    body = fake.interaction(MAIN, [option], channel_id="2000000000000000000")
    body["id"], body["token"] = ID, f"tok-{ID}"
    return json.dumps(body, separators=(",", ":")).replace("2000000000000000000", "{channel}")


class Interactions:
    """Signed interactions from the template, each with a unique id."""

    def __init__(self, text: str, seed: bytes) -> None:
        self.parts = text.split(ID)
        self.key = SigningKey(seed)
        self.first = random.randrange(10**17, 2 * 10**17) * 10
        self.seq = itertools.count()

    def requests(self) -> RequestFactory:
        def make(w: int, i: int, workers: int) -> tuple[str, bytes, dict[str, str]]:
            n = next(self.seq)
            channel = str(3000000000000000000 + spread(w, i, CHANNELS, workers))
            raw = str(self.first + n).join(self.parts).replace("{channel}", channel).encode()
            stamp = str(int(time.time()))
            signature = self.key.sign(stamp.encode() + raw).signature.hex()
            headers = {
                "Content-Type": "application/json",
                "X-Signature-Ed25519": signature,
                "X-Signature-Timestamp": stamp,
            }
            return "/webhooks/discord", raw, headers

        return make


def _bare_server(public_key: str) -> None:
    """``POST /webhooks/discord``: read, verify Ed25519 over timestamp + body, parse, type 4."""
    key = VerifyKey(bytes.fromhex(public_key))

    async def post(request: web.Request) -> web.Response:
        raw = await request.read()
        stamp = request.headers.get("X-Signature-Timestamp", "")
        try:
            key.verify(stamp.encode() + raw, bytes.fromhex(request.headers["X-Signature-Ed25519"]))
        except (KeyError, ValueError, BadSignatureError):
            return web.Response(status=401)
        body = json.loads(raw)
        if body.get("type") != 2:
            return web.Response(status=400)
        return web.json_response({"type": 4, "data": {"content": "ok", "flags": 64}})

    app = web.Application()
    app.router.add_post("/webhooks/discord", post)
    asyncio.run(serve_app(app))


def _ready(fake: FakeDiscord) -> None:
    if not FakeDiscord.wait(lambda: fake.connected and fake.gateway_ops.count(2), 30):
        raise RuntimeError("the daemon did not connect to the fake Discord gateway")


def run(reps: int, concurrency: Sequence[int], duration: float) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, list[Sweep]] = {"ours": [], "bare": []}
    answers: dict[str, int] = {}
    for rep in range(reps):
        seed = random.randbytes(32)
        public_key = SigningKey(seed).verify_key.encode().hex()
        with tempfile.TemporaryDirectory(prefix="musher-b2i-") as tmp, FakeDiscord() as fake:
            servers: list[Server] = []
            try:
                config = CONFIG.format(
                    token=TOKEN,
                    app=fake.app_id,
                    public_key=public_key,
                    api=fake.api_url,
                    gateway=fake.gateway_url,
                    guild=fake.guild_id,
                )
                servers.append(ours := start_daemon(Path(tmp), config))
                servers.append(bare := start_child("bare", MODULE, "--bare", public_key))
                _ready(fake)
                shape = Path(tmp) / "interaction.json"
                shape.write_text(template(fake))
                extra = ["--template", str(shape), "--seed", seed.hex()]
                label = f"B2 discord rep {rep + 1}/{reps}"
                pair = (ours, bare)
                sweeps = sweep_pair(
                    MODULE, label, pair, concurrency, duration, results, None, extra
                )
                for out in sweeps["ours"].values():
                    for status, n in out["statuses"].items():
                        answers[status] = answers.get(status, 0) + n
            finally:
                for server in reversed(servers):
                    server.stop()
    figures = sweep_figures(results, concurrency)
    figures["ours_answers_by_status"] = answers
    params = {
        "endpoint": "POST /webhooks/discord (signed application-command interaction)",
        "ours": (
            "python -m bot run, [transports.discord] with public_key: Ed25519 check on the raw "
            "body, interaction parse, ingress journal, the `status` command run, its reply as "
            "the type-4 answer"
        ),
        "bare": "aiohttp handler: read body, verify the Ed25519 signature, parse JSON, type 4",
        "command": "/musher line:status",
        "channels": CHANNELS,
        **run_params(concurrency, duration, reps, started),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = b2_parser(MODULE, DURATION_S, REPS, CONCURRENCY)
    parser.add_argument("--bare", metavar="PUBLIC_KEY", help=argparse.SUPPRESS)
    parser.add_argument("--template", help=argparse.SUPPRESS)
    parser.add_argument("--seed", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        _bare_server(args.bare)
    elif args.loadgen:
        made = Interactions(Path(args.template).read_text(), bytes.fromhex(args.seed))
        print_result(loadgen_main(args, made.requests()))
    else:
        result = run(args.reps, args.sweep, args.duration)
        emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
