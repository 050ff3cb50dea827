"""A few Prometheus metrics, rendered in the text exposition format for ``GET /metrics``."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence


class Counter:
    def __init__(self, name: str, help: str, label: str | None = None) -> None:
        self.name, self.help, self.label = name, help, label
        self.values: defaultdict[str, float] = defaultdict(float)

    def inc(self, label_value: str = "", amount: float = 1.0) -> None:
        self.values[label_value] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for value, count in sorted(self.values.items()):
            labels = f'{{{self.label}="{value}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {count:g}")
        return lines


class Gauge:
    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help, read

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {self.read():g}",
        ]


class Histogram:
    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help
        self.buckets = sorted(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        total = 0
        for bound, count in zip([*self.buckets, float("inf")], self.counts, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{self.name}_bucket{{le="{le}"}} {total}')
        lines += [f"{self.name}_sum {self.sum:g}", f"{self.name}_count {total}"]
        return lines


class Metrics:
    """The daemon's metrics. Gauges are read at scrape time from the live objects."""

    def __init__(self) -> None:
        self.inbound = Counter(
            "musher_inbound_total",
            "Inbound messages by outcome (accepted, deduped, ignored, refused)",
            "outcome",
        )
        self.turns = Counter("musher_turns_total", "LLM turns by outcome", "outcome")
        self.batch_size = Histogram(
            "musher_batch_size", "Messages per coalesced batch", [1, 2, 3, 5, 10, 20, 50]
        )
        self.turn_seconds = Histogram(
            "musher_turn_duration_seconds",
            "Turn duration",
            [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
        )
        self.sends_failed = Counter(
            "musher_sends_failed_total", "Replies a transport failed to deliver", "transport"
        )
        self.sends_retried = Counter(
            "musher_sends_retried_total",
            "Sends retried after a rate limit, a 5xx or a dropped connection",
            "transport",
        )
        self.webhook_rejected = Counter(
            "musher_webhook_verifications_failed_total",
            "Webhook requests refused for a bad or stale signature",
            "transport",
        )
        self.tokens = Counter("musher_llm_tokens_total", "LLM tokens by direction", "direction")
        self.cost_usd = Counter("musher_llm_cost_usd_total", "LLM spend in US dollars")
        self.lease_transfers = Counter(
            "musher_lease_transfers_total",
            "Leases this node took from another node (released or expired)",
            "kind",
        )
        # PostgreSQL (K2): each holder of leases adds how many it holds now
        self.leases_held: list[Callable[[], float]] = []
        self.gauges: list[Gauge] = [
            Gauge("musher_leases_held", "Leases this node holds",
                  lambda: sum(read() for read in self.leases_held)),
        ]  # fmt: skip

    def record_usage(self, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        self.tokens.inc("input", input_tokens)
        self.tokens.inc("output", output_tokens)
        self.cost_usd.inc(amount=cost_usd)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help, read))

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.inbound,
            self.turns,
            self.batch_size,
            self.turn_seconds,
            self.sends_failed,
            self.sends_retried,
            self.webhook_rejected,
            self.lease_transfers,
        ):
            lines += metric.render()
        for gauge in self.gauges:
            lines += gauge.render()
        return "\n".join(lines) + "\n"
