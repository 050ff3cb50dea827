"""B2 HTTP intake, web half: ``POST /api/v1/rooms/{room}/messages`` on the daemon vs bare aiohttp.

Three kinds of process, all on 127.0.0.1:

* the daemon: ``python -m bot run --config <tmp>/bot.toml`` (``[http] port = 0``, data dir
  in a temp dir, the ``echo`` provider, a 50 ms coalesce window over ``ROOMS`` rooms so that
  turns, replies and their journal writes run *during* the load, as they would in use);
  its URL is read from ``<data_dir>/daemon.json``;
* the baseline: a bare aiohttp handler (``--bare``) that reads and parses the same JSON body
  and answers 202 ``{"id": ...}``, in its own process on its own port;
* the load generator (``--loadgen``): a separate process, a bare asyncio HTTP/1.1 client
  (:func:`load`), ``C`` concurrent keep-alive connections each posting back to back (closed
  loop) with unique message ids, for ``WARMUP_S`` (discarded) + ``DURATION_S`` seconds.

Figure: for each server, the best requests/s among the concurrency sweep whose p99 latency
is under 100 ms; per repetition, then the median over ``REPS`` repetitions; the p50/p99 at
that point; and the ratio ours / bare. Between runs against the daemon the bench waits until
its turns have drained.

The signed Slack event of BENCH.md B2 is :mod:`bench.slack_intake`, which reuses this
module's load generator (:func:`load` with another :data:`RequestFactory`), process handling
(:func:`start_daemon`, :func:`start_child`, :class:`Server`) and figures
(:func:`sweep_figures`).

Run alone: ``python -m bench.intake``; full size e.g.
``python -m bench.intake --reps 5 --duration 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import cpu_seconds, emit, machine, median, percentile, progress, rnd

NAME = "http_intake"
MODULE = "bench.intake"
CONCURRENCY = (8, 32, 64, 128)
"""Far enough that the daemon's p99 nears the limit: it waits on group commits, so its
throughput still grows with concurrency where the bare handler's has stopped."""
REPS = 3
WARMUP_S = 0.5
DURATION_S = 3.0
ROOMS = 1024
WINDOW_MS = 50
P99_LIMIT_MS = 100.0
TARGET = "ratio ours/bare >= 0.5"

DAEMON_CONFIG = """
[daemon]
data_dir = "{data_dir}"
log_level = "WARNING"

[http]
port = 0

[llm]
provider = "echo"

[dispatcher]
coalesce_window_ms = {window_ms}
max_wait_ms = 7500
"""


# --- the bare baseline server --------------------------------------------------------------


async def serve_app(app: web.Application) -> None:
    """Serve ``app`` on 127.0.0.1 (a free port) until SIGTERM/SIGINT; print its URL first."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"http://127.0.0.1:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _bare_server() -> None:
    """Serve ``POST /api/v1/rooms/{room}/messages`` → 202 until SIGTERM; print the URL."""

    async def post(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        return web.json_response({"id": body.get("id"), "status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/api/v1/rooms/{room}/messages", post)
    asyncio.run(serve_app(app))


# --- the load generator --------------------------------------------------------------------


RequestFactory = Callable[[int, int, int], tuple[str, bytes, dict[str, str]]]
"""``(worker, i, workers) -> (path, body, headers)``: the ``i``-th request of load-generator
worker ``worker`` of ``workers``."""


BURST = 5
"""Messages a load-generator worker sends to one room before it moves on: the 5-message
burst of the issue's W1, so a turn answers one burst (``requests_per_turn`` ≈ 5)."""


def spread(w: int, i: int, count: int, workers: int) -> int:
    """Which of ``count`` rooms the ``i``-th request of load-generator worker ``w`` (of
    ``workers``) goes to.

    Each worker is a person who sends a burst of :data:`BURST` messages to a room, then the
    next burst to the next of its own ``count // workers`` rooms (``w``, ``w + workers``, …),
    and round again. No two workers are ever in one room, a worker comes back to a room only
    after ``count // workers`` bursts (long after its turn), and so every turn answers one
    burst, whatever the concurrency.

    Not ``(w * k + i) % count``: whether two workers' walks meet in a room then depends on
    ``k``'s arithmetic (``7919 * 15 ≡ 1 (mod 1024)`` made workers 15 apart trail each
    other by one room), so the messages per turn, and with them the cost per request,
    changed with the concurrency (2 to 8 per turn)."""
    own = max(1, count // workers)
    return (w + workers * ((i // BURST) % own)) % count


def web_requests(rooms: str = "room") -> RequestFactory:
    """``POST /api/v1/rooms/{room}/messages`` over ``ROOMS`` rooms named ``<rooms>-<n>``, with
    unique message ids."""
    run_id = secrets.token_hex(4)
    headers = {"Content-Type": "application/json"}

    def make(w: int, i: int, workers: int) -> tuple[str, bytes, dict[str, str]]:
        room = f"{rooms}-{spread(w, i, ROOMS, workers)}"
        body = (
            f'{{"sender":"user-{w % 7}","text":"please have a look at this, message {i}",'
            f'"id":"{run_id}-{w}-{i}"}}'
        ).encode()
        return f"/api/v1/rooms/{room}/messages", body, headers

    return make


class _Client(asyncio.Protocol):
    """One keep-alive connection of :func:`load`: sends a request, reads its response (the
    status line and ``Content-Length`` are all it looks at), sends the next one."""

    def __init__(self, load: _Load, worker: int) -> None:
        self.load, self.worker = load, worker
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = self.load.loop.time()
        if self.sent_at >= self.load.end:
            self.transport.close()
            return
        self.transport.write(self.load.request(self.worker))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (head_end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:head_end].lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length :]
            self.load.done(int(head[9:12]), self.load.loop.time() - self.sent_at)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.load.loop.time() < self.load.end and self.sent_at:
            self.load.errors += 1  # closed with a request in flight
        if not self.closed.done():
            self.closed.set_result(None)


class _Load:
    """What :func:`load`'s connections share: the requests, the clock and the tallies."""

    def __init__(
        self, url: str, make: RequestFactory, workers: int, warmup: float, duration: float
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = url.removeprefix("http://").split("/")[0]
        self.make, self.workers = make, workers
        self.sent: dict[int, int] = {}
        self.measure_from = self.loop.time() + warmup
        self.end = self.measure_from + duration
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors = 0
        self.answered = 0  # every response, warmup and tail included

    def request(self, worker: int) -> bytes:
        i = self.sent.get(worker, 0)
        self.sent[worker] = i + 1
        path, body, headers = self.make(worker, i, self.workers)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{lines}"
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    def done(self, status: int, latency: float) -> None:
        self.answered += 1
        if self.measure_from <= self.loop.time() <= self.end:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if 200 <= status < 300:
                self.latencies.append(latency)


async def load(
    url: str, concurrency: int, warmup: float, duration: float, make: RequestFactory
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` keep-alive connections post ``make``'s requests back to
    back. Counted: the requests that *finish* inside the measured window (after ``warmup``).

    The client is a bare :class:`asyncio.Protocol` that writes each request in one piece
    and reads only the status and ``Content-Length`` of the answer: it shares the machine
    with the server it measures, and an HTTP client library (aiohttp's took about 250 µs
    per request here) would cap the bare baseline at its own speed. A connection the server
    closes is opened again."""
    state = _Load(url, make, concurrency, warmup, duration)
    host, _, port = state.host.partition(":")

    async def connection(worker: int) -> None:
        while state.loop.time() < state.end:
            try:
                _, client = await state.loop.create_connection(
                    lambda: _Client(state, worker), host, int(port or 80)
                )
            except OSError:
                state.errors += 1
                await asyncio.sleep(0.05)
                continue
            await client.closed

    await asyncio.gather(*(connection(w) for w in range(concurrency)))
    return {
        "requests": len(state.latencies),
        "rps": len(state.latencies) / duration,
        "p50_ms": percentile(state.latencies, 50) * 1000,
        "p99_ms": percentile(state.latencies, 99) * 1000,
        "statuses": state.statuses,
        "errors": state.errors,
        "answered": state.answered,
    }


def run_loadgen(
    module: str,
    url: str,
    concurrency: int,
    warmup: float = WARMUP_S,
    duration: float = DURATION_S,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``python -m <module> --loadgen URL ...`` and return its JSON line."""
    argv = [sys.executable, "-m", module, "--loadgen", url, "--concurrency", str(concurrency)]
    argv += ["--warmup", str(warmup), "--duration", str(duration), *extra]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=warmup + duration + 60,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measured_run(
    module: str,
    server: Server,
    concurrency: int,
    duration: float,
    daemon: bool,
    extra: Sequence[str] = (),
) -> tuple[dict[str, Any], float | None]:
    """:func:`run_loadgen` against ``server``; for the ``daemon``, then wait until its turns
    have drained (:func:`drain`, whose seconds are returned). Adds ``cpu_us_per_request``:
    the server's CPU time over the run (and the drain: the turns and replies the requests
    caused) per request it answered, warmup included: a figure the shared machine's noise
    hardly moves, and the one that bounds requests/s on its cores. For the daemon also
    ``requests_per_turn``: how many of those requests each turn answered on average (the
    coalescing the load allowed, which the per-request cost depends on). ``extra``: more
    arguments for the load generator."""
    turns = turns_ended(server.url) if daemon else None
    before = cpu_seconds(server.proc.pid)
    out = run_loadgen(module, server.url, concurrency, duration=duration, extra=extra)
    drained = drain(server.url) if daemon else None
    after = cpu_seconds(server.proc.pid)
    answered, cpu = out.get("answered", 0), None
    if before is not None and after is not None and answered:
        cpu = (after - before) / answered * 1e6
    out["cpu_us_per_request"] = cpu
    if turns is not None:
        ended = turns_ended(server.url) - turns
        out["requests_per_turn"] = answered / ended if ended else None
    return out, drained


# --- the servers under test ----------------------------------------------------------------


class Server:
    """A subprocess serving HTTP on 127.0.0.1; always stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], url: str) -> None:
        self.name, self.proc, self.url = name, proc, url

    def stop(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MUSHER_CONFIG", None)
    for key in list(env):
        if key.startswith("MUSHER_"):
            env.pop(key)
    return env


def start_daemon(tmp: Path, extra_config: str = "", window_ms: int = WINDOW_MS) -> Server:
    """``python -m bot run`` on ``DAEMON_CONFIG`` (+ ``extra_config``) in ``tmp``; its URL."""
    data_dir = tmp / "data"
    config = tmp / "bot.toml"
    config.write_text(DAEMON_CONFIG.format(data_dir=data_dir, window_ms=window_ms) + extra_config)
    log = (tmp / "daemon.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        cwd=tmp,
    )
    log.close()
    info = data_dir / "daemon.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited ({proc.returncode}): {_tail(tmp / 'daemon.log')}")
        if info.exists():
            with contextlib.suppress(ValueError):
                return Server("ours", proc, json.loads(info.read_text())["url"])
        time.sleep(0.05)
    Server("ours", proc, "").stop()
    raise RuntimeError(f"daemon did not start: {_tail(tmp / 'daemon.log')}")


def start_child(name: str, module: str, *args: str) -> Server:
    """``python -m <module> <args>``: a server that prints its URL as its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline().decode().strip()
    except BaseException:
        Server(name, proc, "").stop()
        raise
    if not line.startswith("http://"):
        Server(name, proc, "").stop()
        raise RuntimeError(f"{name} server did not start")
    return Server(name, proc, line)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


_METRIC = re.compile(r"^(musher_queue_depth|musher_turns_total)(\{[^}]*\})? ([0-9.e+]+)$", re.M)


def turns_ended(url: str) -> float:
    """How many turns the daemon at ``url`` has ended so far (``musher_turns_total``)."""
    import httpx

    return _turns(httpx.get(f"{url}/metrics", timeout=5).text)[1]


def _turns(metrics: str) -> tuple[float, float]:
    """Queued messages and ended turns, from a ``/metrics`` page."""
    depth, turns = 0.0, 0.0
    for name, _, value in _METRIC.findall(metrics):
        if name == "musher_queue_depth":
            depth += float(value)
        else:
            turns += float(value)
    return depth, turns


def drain(url: str, timeout: float = 60.0) -> float:
    """Wait until the daemon has no queued messages and no turn ended for 0.3 s."""
    import httpx

    started = time.monotonic()
    last: tuple[float, float] | None = None
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() - started < timeout:
            depth, turns = _turns(client.get("/metrics").text)
            if depth == 0 and last is not None and last[1] == turns:
                break
            last = (depth, turns)
            time.sleep(0.3)
    return time.monotonic() - started


# --- the benchmark -------------------------------------------------------------------------

Sweep = dict[int, dict[str, Any]]
"""One repetition against one server: concurrency → the load generator's result."""


def best_point(sweep: Sweep) -> dict[str, Any] | None:
    """The run with the highest requests/s whose p99 stays under the limit (None if none)."""
    ok = [r | {"concurrency": c} for c, r in sweep.items() if _within_limit(r)]
    return max(ok, key=lambda r: r["rps"]) if ok else None


def _within_limit(result: dict[str, Any]) -> bool:
    return bool(result["p99_ms"] < P99_LIMIT_MS and result["errors"] == 0 and result["requests"])


def _non_2xx(result: dict[str, Any]) -> int:
    return sum(n for status, n in result["statuses"].items() if not status.startswith("2"))


def sweep_figures(
    results: dict[str, list[Sweep]], concurrency: Sequence[int], latency: str = "latency"
) -> dict[str, Any]:
    """Per server: best rps with p99 < limit (median of reps); the p50/p99 ``latency`` and the
    concurrency of the median repetition's best point; the whole sweep (medians); then the
    ratio ours / bare."""
    figures: dict[str, Any] = {}
    best: dict[str, list[float | None]] = {}
    for name, sweeps in results.items():
        points = [best_point(s) for s in sweeps]
        best[name] = [p["rps"] if p else None for p in points]
        found = [p for p in points if p is not None]
        figures[f"{name}_rps_at_p99_lt_100ms"] = rnd(median(p["rps"] for p in found), 1)
        figures[f"{name}_rps_at_p99_lt_100ms_reps"] = [rnd(b, 1) if b else None for b in best[name]]
        # The latency "at that load": the median repetition's best point (lower median).
        mid = sorted(found, key=lambda p: p["rps"])[(len(found) - 1) // 2] if found else None
        figures[f"{name}_{latency}_p50_ms_at_best"] = rnd(mid["p50_ms"], 2) if mid else None
        figures[f"{name}_{latency}_p99_ms_at_best"] = rnd(mid["p99_ms"], 2) if mid else None
        figures[f"{name}_best_concurrency"] = mid["concurrency"] if mid else None
        figures[f"{name}_best_concurrency_reps"] = [p["concurrency"] if p else None for p in points]
        cpu = [p["cpu_us_per_request"] for p in found if p.get("cpu_us_per_request")]
        figures[f"{name}_cpu_us_per_request_at_best"] = rnd(median(cpu), 1) if cpu else None
        per_turn = [p["requests_per_turn"] for p in found if p.get("requests_per_turn")]
        if per_turn:
            figures[f"{name}_requests_per_turn_at_best"] = rnd(median(per_turn), 2)
        figures[f"{name}_sweep"] = {
            str(c): {
                "rps": rnd(median(s[c]["rps"] for s in sweeps), 1),
                "p50_ms": rnd(median(s[c]["p50_ms"] for s in sweeps), 2),
                "p99_ms": rnd(median(s[c]["p99_ms"] for s in sweeps), 2),
                "errors": sum(s[c]["errors"] for s in sweeps),
                "non_2xx": sum(_non_2xx(s[c]) for s in sweeps),
            }
            for c in concurrency
        }
    ours_best = figures["ours_rps_at_p99_lt_100ms"]
    bare_best = figures["bare_rps_at_p99_lt_100ms"]
    figures["ratio_ours_bare"] = rnd(ours_best / bare_best) if ours_best and bare_best else None
    ours_cpu, bare_cpu = (
        figures["ours_cpu_us_per_request_at_best"],
        figures["bare_cpu_us_per_request_at_best"],
    )
    figures["cpu_per_request_ours_over_bare"] = (
        rnd(ours_cpu / bare_cpu, 2) if ours_cpu and bare_cpu else None
    )
    per_rep = [o / b for o, b in zip(best["ours"], best["bare"], strict=True) if o and b]
    figures["ratio_ours_bare_per_rep"] = [rnd(r) for r in per_rep]
    figures["ratio_ours_bare_median_of_reps"] = rnd(median(per_rep)) if per_rep else None
    return figures


def sweep_pair(
    module: str,
    label: str,
    servers: tuple[Server, Server],
    concurrency: Sequence[int],
    duration: float,
    results: dict[str, list[Sweep]],
    drains: list[float] | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Sweep]:
    """One repetition: every concurrency against both ``servers`` (ours, bare), the first
    of the pair first; the sweeps are appended to ``results`` and returned. With ``drains``,
    each run against the daemon waits for its turns to drain and appends the wait."""
    ours, _ = servers
    sweeps: dict[str, Sweep] = {"ours": {}, "bare": {}}
    for c in concurrency:
        for server in servers if len(results["ours"]) % 2 else servers[::-1]:
            progress(f"{label} {server.name} c={c}")
            daemon = server is ours and drains is not None
            out, drained = measured_run(module, server, c, duration, daemon, extra)
            sweeps["ours" if server is ours else "bare"][c] = out
            if drains is not None and drained is not None:
                drains.append(drained)
    results["ours"].append(sweeps["ours"])
    results["bare"].append(sweeps["bare"])
    return sweeps


def core_ceiling(duration: float) -> dict[str, Any]:
    """:mod:`bench.core_ceiling` in a process of its own (as the daemon is): its figures."""
    argv = [sys.executable, "-m", "bench.core_ceiling", "--duration", str(duration)]
    done = subprocess.run(argv, capture_output=True, env=_env(), timeout=600, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])["figures"]
    return figures


def ceiling_figures(cores: list[dict[str, Any]], bare_reps: list[float | None]) -> dict[str, Any]:
    """The core's messages/s with no HTTP (median of reps) and, per rep, over the bare
    handler's best requests/s: the most the ratio ours/bare could be if HTTP cost nothing."""
    over = [c["core_msgs_per_s"] / b for c, b in zip(cores, bare_reps, strict=True) if b]
    return {
        "core_msgs_per_s_no_http": rnd(median(c["core_msgs_per_s"] for c in cores), 1),
        "core_cpu_us_per_msg_no_http": rnd(median(c["core_cpu_us_per_msg"] for c in cores), 1),
        "core_over_bare_per_rep": [rnd(r) for r in over],
        "core_over_bare_median_of_reps": rnd(median(over)) if over else None,
    }


def run(
    reps: int = REPS, concurrency: Sequence[int] = CONCURRENCY, duration: float = DURATION_S
) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, list[Sweep]] = {"ours": [], "bare": []}
    drains: list[float] = []
    cores: list[dict[str, Any]] = []
    for rep in range(reps):
        label = f"B2 web rep {rep + 1}/{reps}"
        with tempfile.TemporaryDirectory(prefix="musher-b2-") as tmp:
            servers: list[Server] = []
            try:
                servers.append(start_daemon(Path(tmp)))
                servers.append(start_child("bare", "bench.intake", "--bare"))
                pair = (servers[0], servers[1])
                sweep_pair(MODULE, label, pair, concurrency, duration, results, drains)
            finally:
                for server in servers:
                    server.stop()
        progress(f"{label} core ceiling (no HTTP)")
        cores.append(core_ceiling(duration))

    figures = sweep_figures(results, concurrency)
    figures["daemon_drain_after_run_s_median"] = rnd(median(drains), 2)
    figures |= ceiling_figures(cores, figures["bare_rps_at_p99_lt_100ms_reps"])
    params = {
        "endpoint": "POST /api/v1/rooms/{room}/messages",
        "ours": "python -m bot run (web transport, journal durable: WAL, synchronous=FULL)",
        "ours_llm_provider": "echo",
        "ours_coalesce_window_ms": WINDOW_MS,
        "rooms": ROOMS,
        "bare": "aiohttp handler parsing the JSON body, 202 {id}, own process and port",
        "loadgen": "separate process, asyncio HTTP/1.1 client, closed loop, keep-alive, unique ids",
        "figure": "best rps with p99 < 100 ms over the sweep, median over reps; ratio ours/bare",
        "slack_signed_event": "measured separately: python -m bench.slack_intake",
        "core_no_http": "python -m bench.core_ceiling: ingress, durable journal, dispatcher and"
        " turns in one process fed directly, no HTTP, turns that say nothing (an upper bound);"
        " core_over_bare is the most ratio_ours_bare could be if HTTP cost nothing",
        "host": "127.0.0.1, loadgen and server share the machine's 2 cores",
        **run_params(concurrency, duration, reps, started),
    }
    return {"bench": NAME, "params": params, "figures": figures}


def run_params(
    concurrency: Sequence[int], duration: float, reps: int, started: float
) -> dict[str, Any]:
    """The params every B2 module reports about its run (``started``: its monotonic start)."""
    return {
        "concurrency": list(concurrency),
        "warmup_s": WARMUP_S,
        "duration_s": duration,
        "reps": reps,
        "p99_limit_ms": P99_LIMIT_MS,
        "target": TARGET,
        "machine": machine(),
        "wall_s": round(time.monotonic() - started, 1),
    }


def sweep_arg(text: str) -> tuple[int, ...]:
    """``"8,32,64"`` → ``(8, 32, 64)`` (argparse type)."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def b2_parser(
    module: str, duration: float, reps: int, sweep: Sequence[int]
) -> argparse.ArgumentParser:
    """The arguments every B2 module takes: its load generator's (hidden: ``--loadgen URL``
    and its ``--concurrency``/``--warmup``/``--duration``) and a run's size."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--loadgen", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=duration, help="seconds per run")
    parser.add_argument("--reps", type=int, default=reps, help="repetitions (median)")
    parser.add_argument("--sweep", type=sweep_arg, default=tuple(sweep), help="e.g. 8,32,64")
    return parser


def loadgen_main(args: argparse.Namespace, make: RequestFactory) -> dict[str, Any]:
    """The ``--loadgen`` process's run: :func:`load` with ``make``'s requests. Its caller
    adds what it counts itself and hands it to :func:`print_result`."""
    return asyncio.run(load(args.loadgen, args.concurrency, args.warmup, args.duration, make))


def print_result(out: dict[str, Any]) -> None:
    """A load generator's result as the one JSON line :func:`run_loadgen` reads."""
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = b2_parser("bench.intake", DURATION_S, REPS, CONCURRENCY)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rooms", default="room", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        _bare_server()
        return
    if args.loadgen:
        print_result(loadgen_main(args, web_requests(args.rooms)))
        return
    result = run(args.reps, args.sweep, args.duration)
    emit(result["bench"], result["params"], result["figures"])


if __name__ == "__main__":
    main()
