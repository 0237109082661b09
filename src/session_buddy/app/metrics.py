"""Prometheus metrics. Labels are bounded: event type, outcome, component, model, tool,
reason; never a session, user or host. Component and model names are chosen by clients,
so at most COMPONENT_LABELS of each get a label of their own (for components, the most
frequent stored ones first, given at start-up; then new ones while there is room); the
rest count as `other`."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "session_buddy"
DURATION_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, float("inf"))
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    float("inf"),
)
CONTENT_TYPE = CONTENT_TYPE_LATEST
COMPONENT_LABELS = 100
OTHER_COMPONENTS = "other"


class _Bounded:
    """Names chosen by clients as labels: the first COMPONENT_LABELS, then `other`."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._labelled = set(itertools.islice(known, COMPONENT_LABELS))

    def __call__(self, name: str) -> str:
        if name not in self._labelled:
            if len(self._labelled) >= COMPONENT_LABELS:
                return OTHER_COMPONENTS
            self._labelled.add(name)
        return name


class SessionMetrics:
    """One registry per server, so several servers in one process never collide."""

    def __init__(self, frequent_components: Iterable[str] = ()) -> None:
        self.component = _Bounded(frequent_components)  # the label a component counts under
        self._model = _Bounded()
        self.registry = CollectorRegistry()
        self.events = Counter(
            f"{PREFIX}_events",
            "Accepted events by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.rejected = Counter(
            f"{PREFIX}_events_rejected",
            "Rejected events (invalid, unauthorized, failed) by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.started = Counter(
            f"{PREFIX}_sessions_started",
            "New sessions by component.",
            ["component"],
            registry=self.registry,
        )
        self.ended = Counter(
            f"{PREFIX}_sessions_ended",
            "Sessions ended by component and final state.",
            ["component", "state"],
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_session_duration_seconds",
            "Duration of ended sessions (event time).",
            ["component"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.tool_latency = Histogram(
            f"{PREFIX}_tool_call_duration_seconds",
            "MCP tool call latency by tool.",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.otlp = Counter(
            f"{PREFIX}_otlp_records",
            "OpenTelemetry log records and metric points received, by signal and outcome.",
            ["signal", "outcome"],
            registry=self.registry,
        )
        self.cost = Counter(
            f"{PREFIX}_agent_cost_usd",
            "Cost of agents' API requests as they report it, by model.",
            ["model"],
            registry=self.registry,
        )
        self.tokens = Counter(
            f"{PREFIX}_agent_tokens",
            "Tokens of agents' API requests as they report them, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.active = Gauge(
            f"{PREFIX}_sessions_active",
            "Sessions active in the store, read at scrape time.",
            registry=self.registry,
        )

    def event(self, event_type: str, outcome: str) -> None:
        self.events.labels(event_type, outcome).inc()

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def telemetry(self, signal: str, accepted: int, rejected: int) -> None:
        """OpenTelemetry records (or data points) taken in, and refused."""
        self.otlp.labels(signal, "accepted").inc(accepted)
        self.otlp.labels(signal, "rejected").inc(rejected)

    def used(self, model: str, cost_usd: float) -> None:
        self.cost.labels(self._model(model)).inc(cost_usd)

    def tokens_used(self, kind: str, count: float) -> None:
        self.tokens.labels(kind).inc(count)

    def session_started(self, component: str) -> None:
        self.started.labels(self.component(component)).inc()

    def session_ended(self, component: str, state: str, duration_seconds: float | None) -> None:
        label = self.component(component)
        self.ended.labels(label, state).inc()
        if duration_seconds is not None:
            self.duration.labels(label).observe(duration_seconds)

    def render(self, active_sessions: float) -> bytes:
        self.active.set(active_sessions)
        return generate_latest(self.registry)
