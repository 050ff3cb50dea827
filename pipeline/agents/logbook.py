"""Each item's agent log: short lines (what the agent said, its tool calls, gate results)
kept under ``<data_dir>/agent-logs/<project>/<N>.log`` for ``logs N`` (never in the
project, so an agent cannot read or rewrite it)."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

MAX_LINE = 500
MAX_BYTES = 1 << 20


class Logbook:
    """Append and read the agent logs of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "agent-logs"

    def path(self, project: str, number: int) -> Path:
        return self.root / project / f"{number}.log"

    def append(self, project: str, number: int, line: str) -> None:
        """Add one line, stamped with the UTC time; a log over 1 MB keeps its newer half."""
        path = self.path(project, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        text = line.replace("\n", " ").strip()[:MAX_LINE]
        with path.open("a", encoding="utf-8") as log:
            log.write(f"{stamp} {text}\n")
        if path.stat().st_size > MAX_BYTES:
            kept = path.read_text(encoding="utf-8", errors="replace")[-MAX_BYTES // 2 :]
            path.write_text(kept[kept.find("\n") + 1 :], encoding="utf-8")

    def tail(self, project: str, number: int, lines: int) -> list[str]:
        """The last ``lines`` lines (none when the item never had an agent)."""
        path = self.path(project, number)
        if not path.is_file():
            return []
        with path.open(encoding="utf-8", errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, maxlen=lines)]

    def remove(self, project: str, number: int) -> bool:
        """Delete the item's log; returns whether there was one."""
        path = self.path(project, number)
        if path.is_file():
            path.unlink()
            return True
        return False
