"""Sessions out: every transition a server commits, as an OpenTelemetry log record sent
by the OpenTelemetry SDK's OTLP exporter (the `otel` extra), so that sessions show up
in an OpenTelemetry Collector, Grafana, Langfuse and the like.

Records follow OpenTelemetry's session conventions: the events `session.start` and
`session.end` carry `session.id` (and `session.previous_id` on a continuation); resumes,
revivals and activity changes are `session_buddy.session.*` events. Our fields ride as
`session_buddy.*` attributes, with the usage an agent reported on `session.end`. The
SDK's batch processor queues records and sends them from its own thread, retrying with
backoff; a full queue drops records rather than wait, so a write never waits for an
export. Configuration is OpenTelemetry's own (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_BLRP_*`, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from session_buddy import __version__
from session_buddy.core.errors import SessionBuddyError

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

SHUTDOWN_MILLIS = 5000  # what a stopping server gives the queue to drain
_FIELDS = (
    *("component_name", "shell_type", "status", "end_reason", "exit_code"),
    *("duration_seconds", "activity", "activity_detail", "external_id"),
    *("parent_session_id", "cwd", "started_at", "ended_at"),
)
_USAGE = (
    *("cost_usd", "input_tokens", "output_tokens", "cache_read_tokens"),
    *("cache_creation_tokens", "api_requests", "api_errors", "tool_calls"),
    *("tool_failures", "prompts", "active_seconds"),
)
_SEVERITY = {"crashed": "ERROR", "abandoned": "WARN"}


class ExportUnavailable(SessionBuddyError):
    """The export was asked for, but the OpenTelemetry SDK is not installed."""

    code = "otel_unavailable"


class SessionExporter:
    """Turns committed transitions into log records on an OpenTelemetry logger."""

    def __init__(self) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        except ImportError as exc:
            raise ExportUnavailable(
                "OTEL_LOGS_EXPORTER asks for an OpenTelemetry export, which needs "
                "`pip install 'session-buddy[otel]'`"
            ) from exc
        from opentelemetry._logs import SeverityNumber

        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "session-buddy"}))
        self.provider: LoggerProvider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
        self.logger = self.provider.get_logger("session_buddy", __version__)
        self._severity = {
            "INFO": SeverityNumber.INFO,
            "WARN": SeverityNumber.WARN,
            "ERROR": SeverityNumber.ERROR,
        }

    def __call__(self, transitions: list[dict[str, Any]]) -> None:
        for transition in transitions:
            record = transition["record"]
            severity = _SEVERITY.get(record["status"], "INFO")
            self.logger.emit(
                timestamp=transition["time_us"] * 1000,
                severity_number=self._severity[severity],
                severity_text=severity,
                event_name=transition["event"],
                body=f"{transition['event']} {record['session_id']} ({transition['outcome']})",
                attributes=attributes(transition),
            )

    def shutdown(self) -> None:
        """Send what is queued (within SHUTDOWN_MILLIS), then stop."""
        self.provider.force_flush(SHUTDOWN_MILLIS)
        self.provider.shutdown()


def attributes(transition: dict[str, Any]) -> dict[str, Any]:
    """A transition's log attributes: the conventions' names where they have one, ours
    under `session_buddy.`; no None values (OpenTelemetry has none)."""
    record = transition["record"]
    given: dict[str, Any] = {
        "session.id": record["session_id"],
        "session.previous_id": record.get("previous_session_id"),
        "host.name": record.get("hostname"),
        "user.name": record.get("username"),
        "process.pid": record.get("pid"),
        "session_buddy.outcome": transition["outcome"],
    }
    given |= {f"session_buddy.{name}": record.get(name) for name in _FIELDS}
    used = record.get("usage") or {}
    if transition["event"] == "session.end":
        given |= {f"session_buddy.usage.{name}": used.get(name) for name in _USAGE}
    return {name: value for name, value in given.items() if value is not None}
