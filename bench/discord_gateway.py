"""B2 for Discord: a gateway message → the first byte of the reply, musher vs a bare bot.

Both run as their own processes against their own fake Discord (REST and gateway, from
``tests/fakes/discord_api.py``, served by this process on 127.0.0.1):

* ours: ``python -m bot run`` (echo provider, durable journal) with ``[transports.discord]``
  pointed at the fake; each message is ``<@bot> show N``, a command, so the reply path is
  gateway → discord.py → ingress (journal) → command → create-message with its nonce;
* the baseline (``--bare``): a bare discord.py ``Client`` whose ``on_message`` answers a
  mention with ``channel.send`` at once (no journal, no command).

One message at a time (closed loop, ``MESSAGES`` per repetition after ``WARMUP``): the time
from the fake dispatching ``MESSAGE_CREATE`` to the reply's create-message request reaching
the fake's REST route. Figures: p50/p99 per server (median over ``REPS``) and the p50 ratio
ours / bare. Every process is stopped at the end.

Run alone: ``python -m bench.discord_gateway``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, machine, median, percentile, progress, rnd
from bench.intake import Server, _env, start_daemon
from tests.fakes.discord_api import TOKEN, FakeDiscord

NAME = "discord_gateway_reply"
MODULE = "bench.discord_gateway"
REPS = 3
MESSAGES = 100
WARMUP = 10

CONFIG = """
[transports.discord]
enabled = true
bot_token = "{token}"
api_base_url = "{api}"
gateway_url = "{gateway}"
guilds = ["{guild}"]
"""


def _bare(api: str, gateway: str) -> None:
    """A bare discord.py bot: a mention is answered with ``channel.send`` at once."""
    import discord
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    Route.BASE = api
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.message_content = True
    client = discord.Client(intents=intents, guild_ready_timeout=0.1)

    @client.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot and client.user in message.mentions:
            await message.channel.send(f"echo: {message.content}")

    client.run(TOKEN, log_handler=None)


def wait(predicate: Any, timeout: float = 30.0) -> None:
    if not FakeDiscord.wait(predicate, timeout):
        raise RuntimeError("the bot did not answer in time")


def measure(fake: FakeDiscord, count: int) -> list[float]:
    """Seconds from dispatch to the reply's create-message, one message at a time."""
    latencies = []
    for n in range(count):
        before = len(fake.calls_to("create_message"))
        started = time.monotonic()
        fake.say(f"<@{fake.app_id}> show {n + 1}")
        wait(lambda: len(fake.calls_to("create_message")) > before)  # noqa: B023
        latencies.append(fake.calls_to("create_message")[before].at - started)
    return latencies


def one_rep(tmp: Path, messages: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with FakeDiscord() as ours_fake, FakeDiscord() as bare_fake:
        servers: list[Server] = []
        try:
            config = CONFIG.format(
                token=TOKEN,
                api=ours_fake.api_url,
                gateway=ours_fake.gateway_url,
                guild=ours_fake.guild_id,
            )
            servers.append(start_daemon(tmp, config))
            argv = [
                sys.executable,
                "-m",
                MODULE,
                "--bare",
                bare_fake.api_url,
                bare_fake.gateway_url,
            ]
            servers.append(Server("bare", subprocess.Popen(argv, env=_env()), ""))
            for name, fake in (("ours", ours_fake), ("bare", bare_fake)):
                wait(lambda: fake.connected and fake.gateway_ops.count(2))  # noqa: B023
                measure(fake, WARMUP)
                out[name] = measure(fake, messages)
        finally:
            for server in reversed(servers):
                server.stop()
    return out


def run(reps: int, messages: int) -> dict[str, Any]:
    started = time.monotonic()
    p50: dict[str, list[float]] = {"ours": [], "bare": []}
    p99: dict[str, list[float]] = {"ours": [], "bare": []}
    for rep in range(reps):
        progress(f"discord gateway rep {rep + 1}/{reps}")
        with tempfile.TemporaryDirectory(prefix="musher-b2d-") as tmp:
            for name, latencies in one_rep(Path(tmp), messages).items():
                p50[name].append(percentile(latencies, 50) * 1000)
                p99[name].append(percentile(latencies, 99) * 1000)
    figures: dict[str, Any] = {}
    for name in ("ours", "bare"):
        figures[f"{name}_reply_p50_ms"] = rnd(median(p50[name]), 2)
        figures[f"{name}_reply_p99_ms"] = rnd(median(p99[name]), 2)
        figures[f"{name}_reply_p50_ms_reps"] = [rnd(v, 2) for v in p50[name]]
    ratios = [o / b for o, b in zip(p50["ours"], p50["bare"], strict=True) if b]
    figures["ratio_p50_ours_bare_median_of_reps"] = rnd(median(ratios)) if ratios else None
    params = {
        "what": "MESSAGE_CREATE dispatched by the fake gateway → reply create-message at its REST",
        "ours": "python -m bot run, [transports.discord]; '<@bot> show N' (a command), journal",
        "bare": "discord.py Client, on_message → channel.send, own process",
        "messages_per_rep": messages,
        "warmup_messages": WARMUP,
        "reps": reps,
        "host": "127.0.0.1; the fakes run in the benchmark's process",
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def main() -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--bare", nargs=2, metavar=("API", "GATEWAY"), help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=REPS, help="repetitions (median)")
    parser.add_argument("--messages", type=int, default=MESSAGES, help="messages per repetition")
    args = parser.parse_args()
    if args.bare:
        _bare(*args.bare)
        return
    result = run(args.reps, args.messages)
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
