"""Tokens and cost per turn, room, project and item (L5), and the ``cost`` report."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from bot.db import Db
from pipeline.storage import Conn

SCHEMA = """
CREATE TABLE IF NOT EXISTS turn_costs (
    turn_id       INTEGER PRIMARY KEY,
    session       TEXT NOT NULL,
    project       TEXT,
    item          INTEGER,
    provider      TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd      REAL NOT NULL,
    ts            REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turn_costs_ts ON turn_costs (ts);
"""

DAY_S = 86400.0


class CostBook:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def record(
        self,
        turn_id: int,
        session: str,
        provider: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        project: str | None = None,
        item: int | None = None,
    ) -> None:
        """Record one turn's usage (idempotent per turn)."""
        row = (turn_id, session, project, item, provider, input_tokens, output_tokens, cost_usd)
        await self.db.write(self.job(row))

    async def record_agent(self, project: str, item: int, profile: str, cost_usd: float) -> None:
        """Record one agent run's spend against its item (A2, L5): a row of its own in room
        ``agent:<profile>``. Its id is a random negative one, so it never meets a turn's
        nor another node's row written at the same moment on a shared store."""
        row = (-1 - secrets.randbits(62), f"agent:{profile}", project, item, "agent", 0, 0,
               cost_usd)  # fmt: skip
        await self.db.write(self.job(row))

    @staticmethod
    def job(row: tuple[object, ...]) -> Callable[[Conn], None]:
        """A write job storing ``row`` (the columns of ``turn_costs`` but ``ts``), to run
        inside another transaction (the turn's own closing write)."""

        def job(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO turn_costs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (turn_id) DO UPDATE SET session = excluded.session,"
                " project = excluded.project, item = excluded.item,"
                " provider = excluded.provider, input_tokens = excluded.input_tokens,"
                " output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd,"
                " ts = excluded.ts",
                (*row, time.time()),
            )

        return job

    async def report(self, since_s: float = DAY_S, top: int = 5) -> str:
        """The last ``since_s`` seconds: total, top rooms, top items."""
        cutoff = time.time() - since_s
        total = await self.db.read(
            "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0),"
            " COALESCE(SUM(output_tokens), 0) FROM turn_costs WHERE ts >= ?",
            (cutoff,),
        )
        turns, usd, tokens_in, tokens_out = tuple(total[0])
        lines = [
            f"Last 24 h: ${usd:.4f} over {turns} turns "
            f"({tokens_in:,} tokens in, {tokens_out:,} out)."
        ]
        rooms = await self.db.read(
            "SELECT session, SUM(cost_usd) AS usd, COUNT(*) FROM turn_costs WHERE ts >= ?"
            " GROUP BY session ORDER BY usd DESC, session LIMIT ?",
            (cutoff, top),
        )
        if rooms:
            lines.append("Top rooms:")
            lines += [f"  {r[0]}: ${r[1]:.4f} ({r[2]} turns)" for r in rooms]
        items = await self.db.read(
            "SELECT project, item, SUM(cost_usd) AS usd FROM turn_costs"
            " WHERE ts >= ? AND item IS NOT NULL GROUP BY project, item ORDER BY usd DESC LIMIT ?",
            (cutoff, top),
        )
        if items:
            lines.append("Top items:")
            lines += [f"  {r[0]} #{r[1]}: ${r[2]:.4f}" for r in items]
        return "\n".join(lines)

    async def chart(self, days: int = 14, top: int = 5) -> dict[str, object]:
        """The cost chart's data: spend per UTC day over the last ``days`` days (oldest
        first, empty days included), the top items over that span, and the last 24 h total
        exactly as the ``cost`` command reports it."""
        now = time.time()
        first = (int(now // DAY_S) - days + 1) * DAY_S
        rows = await self.db.read(
            "SELECT ts, cost_usd FROM turn_costs WHERE ts >= ? ORDER BY ts", (first,)
        )
        per_day: dict[int, tuple[float, int]] = {}
        for ts, usd in rows:  # bucketed here: CAST rounds on PostgreSQL, truncates on SQLite
            spent, turns = per_day.get(int(ts // DAY_S), (0.0, 0))
            per_day[int(ts // DAY_S)] = (spent + float(usd), turns + 1)
        start = int(first // DAY_S)
        series = []
        for day in range(start, start + days):
            usd, turns = per_day.get(day, (0.0, 0))
            date = time.strftime("%Y-%m-%d", time.gmtime(day * DAY_S))
            series.append({"date": date, "usd": usd, "turns": turns})
        items = await self.db.read(
            "SELECT project, item, SUM(cost_usd) AS usd FROM turn_costs"
            " WHERE ts >= ? AND item IS NOT NULL GROUP BY project, item"
            " ORDER BY usd DESC, project, item LIMIT ?",
            (first, top),
        )
        last = await self.db.read(
            "SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM turn_costs WHERE ts >= ?",
            (now - DAY_S,),
        )
        return {
            "days": series,
            "top_items": [{"project": r[0], "item": r[1], "usd": r[2]} for r in items],
            "last_24h": {"usd": float(last[0][0]), "turns": int(last[0][1])},
        }

    async def item_cost(self, project: str, item: int) -> dict[str, object]:
        """All the spend ever recorded against ``project``'s item ``item``."""
        rows = await self.db.read(
            "SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM turn_costs"
            " WHERE project = ? AND item = ?",
            (project, item),
        )
        return {"usd": float(rows[0][0]), "turns": int(rows[0][1])}
