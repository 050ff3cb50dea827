"""W2 busy mode steer vs collect: a message, then 3 more while the LLM answers the first.

The daemon's core (real journal, dispatcher, turn runner and the ``openai`` chat provider)
talks to a small OpenAI-compatible server on 127.0.0.1 that takes ``LATENCY_S`` per call
and logs every call. Script ``tool``: the first call of a turn asks for the ``status`` tool,
a call after a tool result answers; script ``plain``: every call answers
at once (no tool boundary, so steer falls back to one follow-up turn). Each answer lists the
room messages the model has read (``saw m1 m2 …``).

Figures per mode and script (medians over ``REPS`` bursts, each in a fresh room): LLM calls
per burst, room messages left unanswered, and the time from the last message to the first
answer that covers it; ``steer / collect`` ratios are measured in the same run. The figure
to quote: with tools, steer costs one turn (two calls) where collect costs two turns (four).

Run alone: ``python -m bench.steer``.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import bench_settings, emit, machine, median, progress, quiet_logs, rnd
from bot.daemon import build_core
from bot.db import Database
from bot.journal import LogEntry
from bot.llm.chat import ChatProvider
from bot.llm.history import History
from bot.llm.openai import OpenAIWire
from bot.messages import InboundMessage, session_key
from bot.schema import DAEMON_SCHEMA
from config.models import OpenAIConfig
from pipeline.keys import load_or_create
from pipeline.store import OpStore

NAME = "W2_steer"
LATENCY_S = 0.4
FOLLOW_GAPS_S = (0.05, 0.1, 0.15)  # the 3 messages after the first, once its turn runs
WINDOW_MS = 100
REPS = 5
_SEEN = re.compile(r"\bm\d+\b")


class CountingLlm:
    """An OpenAI-compatible chat server: ``LATENCY_S`` per call, every call counted."""

    def __init__(self, tools: bool) -> None:
        self.tools = tools
        self.calls = 0
        self.called = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self._runner = web.AppRunner(app)
        self.url = ""

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"

    async def aclose(self) -> None:
        await self._runner.cleanup()

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls += 1
        self.called.set()
        await asyncio.sleep(LATENCY_S)
        messages = body["messages"]
        read = " ".join(str(m.get("content")) for m in messages if m["role"] == "user")
        ask_tool = self.tools and "tools" in body and not _tool_used(messages)
        if ask_tool:
            call = {"index": 0, "id": f"call_{self.calls}", "type": "function"}
            call["function"] = {"name": "status", "arguments": "{}"}
            delta: dict[str, Any] = {"tool_calls": [call]}
            finish = "tool_calls"
        else:
            delta = {"content": "saw " + " ".join(dict.fromkeys(_SEEN.findall(read)))}
            finish = "stop"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in (
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        ):
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _tool_used(messages: list[dict[str, Any]]) -> bool:
    """Whether the turn being answered already used a tool (after the last answer)."""
    for message in reversed(messages):
        if message["role"] == "tool":
            return True
        if message["role"] == "assistant" and not message.get("tool_calls"):
            return False
    return False


async def _burst(mode: str, tools: bool, rep: int) -> dict[str, float]:
    """One W2 burst in a fresh daemon core; returns its figures."""
    llm = CountingLlm(tools)
    await llm.start()
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="musher-w2-") as tmp:
        db = await Database.open(Path(tmp) / "musher.db", DAEMON_SCHEMA)
        try:
            store = await OpStore.open(db, load_or_create(Path(tmp)))
            settings = bench_settings(WINDOW_MS, busy_mode=mode)
            config = OpenAIConfig(base_url=llm.url, model="bench", max_retries=0)
            provider = ChatProvider(OpenAIWire(config), History(db), 20)
            core = build_core(settings, db, store, provider=provider)
            ingress = core.ingress({})
            session = session_key("bench", f"room-{rep}")
            arrivals: dict[str, float] = {}
            answers: list[tuple[float, str]] = []

            async def say(n: int) -> None:
                arrivals[f"m{n}"] = loop.time()
                text = f"look at this please m{n}"
                msg = InboundMessage("bench", f"room-{rep}", "alice", f"e{n}", 0, text, True)
                await ingress.feed(msg)

            with core.feed.subscribe(session) as queue:
                await say(1)
                await llm.called.wait()  # the first turn is running
                for n, gap in enumerate(FOLLOW_GAPS_S, start=2):
                    await asyncio.sleep(gap - (FOLLOW_GAPS_S[n - 3] if n > 2 else 0))
                    await say(n)
                while not answers or "m4" not in answers[-1][1]:
                    event = await asyncio.wait_for(queue.get(), 30)
                    if isinstance(event, LogEntry) and event.role == "bot":
                        answers.append((loop.time(), event.text))
                await core.dispatcher.join()
            unanswered = sum(
                1 for m in arrivals if not any(m in text.split() for _, text in answers)
            )
            first_full = next(at for at, text in answers if "m4" in text.split())
            await core.lanes.aclose(1.0)
            await core.dispatcher.aclose()
            await provider.aclose()
            return {
                "calls": llm.calls,
                "answers": len(answers),
                "unanswered": unanswered,
                "last_to_answer_s": first_full - arrivals["m4"],
            }
        finally:
            await db.aclose()
            await llm.aclose()


async def _run() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for script, tools in (("tool", True), ("plain", False)):
        per_mode: dict[str, list[dict[str, float]]] = {}
        for mode in ("collect", "steer"):
            progress(f"W2 {script} {mode}: {REPS} bursts")
            per_mode[mode] = [await _burst(mode, tools, rep) for rep in range(REPS)]
        for mode, runs in per_mode.items():
            figures[f"{script}_{mode}"] = {
                "llm_calls_per_burst": median(r["calls"] for r in runs),
                "answers_per_burst": median(r["answers"] for r in runs),
                "unanswered": sum(r["unanswered"] for r in runs),
                "last_message_to_answer_s_p50": rnd(median(r["last_to_answer_s"] for r in runs)),
            }
        steer, collect = figures[f"{script}_steer"], figures[f"{script}_collect"]
        figures[f"{script}_ratio_steer_vs_collect"] = {
            "llm_calls": rnd(steer["llm_calls_per_burst"] / collect["llm_calls_per_burst"]),
            "time_to_answer": rnd(
                steer["last_message_to_answer_s_p50"] / collect["last_message_to_answer_s_p50"]
            ),
        }
    return figures


def main() -> None:
    quiet_logs()
    figures = asyncio.run(_run())
    params = {
        "llm_latency_s": LATENCY_S,
        "follow_gaps_s": list(FOLLOW_GAPS_S),
        "window_ms": WINDOW_MS,
        "reps": REPS,
        "target": "steer with tools: one turn plus at most one continuation (2 calls)",
        "machine": machine(),
    }
    emit(NAME, params, figures)


if __name__ == "__main__":
    main()
