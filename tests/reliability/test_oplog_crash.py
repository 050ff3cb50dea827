"""R4: every op acknowledged before a SIGKILL is in the log afterwards, and the log is sound.

A real subprocess appends ops concurrently and prints each seq after its commit returned;
the test kills it with SIGKILL at several points, restarting it each time on the same data
dir, then checks: acknowledged ops missing = 0, ``PRAGMA integrity_check`` = ok (SQLite),
the author sequence resumes above everything committed, and the full audit (signatures +
replay) is clean. On both store backends (K1).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store_url import open_db, sqlite_path
from pipeline.audit import verify
from pipeline.keys import load_or_create
from pipeline.store import OpStore

REPO = Path(__file__).resolve().parents[2]


def run_until_killed(data_dir: Path, url: str, acks_wanted: int) -> list[int]:
    """Start the writer, SIGKILL it after ``acks_wanted`` acks; return every seq it acked."""
    command = [sys.executable, "-m", "tests.reliability.oplog_writer", str(data_dir), "8", url]
    pipe = subprocess.PIPE
    with subprocess.Popen(command, cwd=REPO, stdout=pipe, stderr=pipe, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        acked: list[int] = []
        try:
            for line in proc.stdout:
                if line.startswith("ack "):
                    acked.append(int(line.split()[1]))
                    if len(acked) >= acks_wanted:
                        break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        tail, errors = proc.stdout.read(), proc.stderr.read()
    acked += [int(line.split()[1]) for line in tail.splitlines(keepends=True)
              if line.startswith("ack ") and line.endswith("\n")]  # fmt: skip
    assert len(acked) >= acks_wanted, f"the writer stopped early:\n{errors}"
    return acked


async def check_durable(data_dir: Path, url: str, acked: list[int]) -> None:
    path = sqlite_path(url)
    if path is not None:
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            raw.close()
    db = await open_db(url, data_dir)
    try:
        store = await OpStore.open(db, load_or_create(data_dir))  # the startup check passes
        rows = await db.read("SELECT seq FROM ops WHERE author = ?", (store.author,))
        stored = {int(row[0]) for row in rows}
        assert not set(acked) - stored, "acknowledged ops are missing"
        assert store.next_seq == max(stored) + 1
        report = await verify(db)
        assert report.ok, str(report)
    finally:
        await db.aclose()


async def crash_loop(data_dir: Path, url: str, kill_points: list[int]) -> None:
    everything: list[int] = []
    for acks_wanted in kill_points:
        acked = run_until_killed(data_dir, url, acks_wanted)
        assert everything == [] or min(acked) > max(everything), "a seq was reused"
        everything += acked
        await check_durable(data_dir, url, everything)
    assert len(set(everything)) == len(everything)


async def test_acknowledged_ops_survive_sigkill(store_url: str, tmp_path: Path) -> None:
    await crash_loop(tmp_path, store_url, [200, 1000, 3000])


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_acknowledged_ops_survive_fifty_sigkills(tmp_path: Path) -> None:
    rng = random.Random(4)
    url = f"sqlite:///{tmp_path / 'musher.db'}"
    await crash_loop(tmp_path, url, [rng.randint(20, 380) for _ in range(50)])
