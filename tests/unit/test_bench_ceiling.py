"""B2's core ceiling: the figures it adds to the web intake result, and one small real run.

The run is tiny (a fraction of a second per point) and asserts only what it reports:
messages went through, turns answered bursts, and the figures are there. No timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.intake import ceiling_figures


def test_ceiling_figures_divide_each_rep_by_its_own_bare_run() -> None:
    cores = [
        {"core_msgs_per_s": 8000.0, "core_cpu_us_per_msg": 100.0},
        {"core_msgs_per_s": 9000.0, "core_cpu_us_per_msg": 90.0},
        {"core_msgs_per_s": 6000.0, "core_cpu_us_per_msg": 120.0},
    ]
    figures = ceiling_figures(cores, [16000.0, 12000.0, None])
    assert figures["core_msgs_per_s_no_http"] == 8000.0
    assert figures["core_cpu_us_per_msg_no_http"] == 100.0
    assert figures["core_over_bare_per_rep"] == [0.5, 0.75]  # the rep with no bare figure: none
    assert figures["core_over_bare_median_of_reps"] == 0.625


def test_ceiling_figures_without_any_bare_run_say_none() -> None:
    figures = ceiling_figures([{"core_msgs_per_s": 1.0, "core_cpu_us_per_msg": 1.0}], [None])
    assert figures["core_over_bare_per_rep"] == []
    assert figures["core_over_bare_median_of_reps"] is None


def test_a_small_run_feeds_the_real_core_and_turns_answer_bursts() -> None:
    # its own process, as in bench.intake: the run sets the cycle collector up as the daemon
    # does (and freezes what exists), which must not leak into this test process
    argv = [sys.executable, "-m", "bench.core_ceiling", "--sweep", "4,8", "--warmup", "0.1"]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([*argv, "--duration", "0.3"], capture_output=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    figures = result["figures"]
    assert result["bench"] == "http_intake_core_ceiling"
    assert set(figures["core_sweep"]) == {"4", "8"}
    best = figures["core_sweep"][str(figures["core_best_concurrency"])]
    assert figures["core_msgs_per_s"] == best["msgs_per_s"] > 0
    assert figures["core_cpu_us_per_msg"] > 0
    assert best["msgs_per_turn"] > 1  # bursts coalesce: fewer turns than messages
