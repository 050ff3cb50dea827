"""``python -m bench`` (``make bench``): run every benchmark, one JSON line each on stdout.

B1 ``bench.dispatch``, B2 ``bench.intake``, B6 ``bench.sessions``; each also runs alone as
``python -m bench.<name>``. Progress goes to stderr. A benchmark that fails prints a line
with an ``error`` and the others still run; the exit status is then 1. Nothing asserts a
timing: targets are printed next to the figures for context.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import dispatch, intake, sessions
from bench.common import emit, progress


def _dispatch() -> dict[str, Any]:
    return asyncio.run(dispatch.run())


BENCHES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    (dispatch.NAME, _dispatch),
    (intake.NAME, intake.run),
    (sessions.NAME, sessions.run),
]


def main() -> int:
    failed = 0
    started = time.monotonic()
    for name, bench in BENCHES:
        try:
            result = bench()
        except Exception as exc:
            failed += 1
            traceback.print_exc()
            print_error(name, exc)
            continue
        emit(result["bench"], result["params"], result["figures"])
    progress(f"all benchmarks done in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def print_error(name: str, exc: Exception) -> None:
    import json

    line = {"bench": name, "params": {}, "figures": {}, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
