"""What became of one delivery attempt: the one classification the emitter, `emit`,
`spool flush` and the hooks share.

- delivered: the server took the event (a repeated one included);
- transient: no connection, timeout, HTTP 5xx/429, a reply that cannot be decoded, a
  store failure (`error_code="store_unavailable"`) or a race with another writer
  (`"conflict"`): spool it, retry with backoff;
- refused: a field is invalid, or an end for a session the server does not know: never
  retried, kept in the spool's rejected list with the reason;
- credentials: HTTP 401/403 or a token without the scope: kept, and said loudly.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from session_buddy.client.transports import (
    CredentialsError,
    RequestRefused,
    Transport,
    TransportError,
)

CREDENTIAL_CODES = ("unauthorized", "forbidden")
TRANSIENT_CODES = ("store_unavailable", "conflict")


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    REFUSED = "refused"
    CREDENTIALS = "credentials"


class Attempt(NamedTuple):
    outcome: Outcome
    result: dict[str, Any]  # the server's answer ({} when there was none)
    reason: str = ""


def classify(tool: str, result: dict[str, Any]) -> Attempt:
    """The outcome of a tool result, decided on `status` and `error_code` only."""
    if result.get("status") == "error":
        code = result.get("error_code")
        reason = str(result.get("error") or "refused without a reason")
        if code in CREDENTIAL_CODES:
            return Attempt(Outcome.CREDENTIALS, result, reason)
        if code in TRANSIENT_CODES:
            return Attempt(Outcome.TRANSIENT, result, reason)
        return Attempt(Outcome.REFUSED, result, reason)
    if tool == "track_session_end" and result.get("status") == "not_found":
        return Attempt(Outcome.REFUSED, result, f"no session {result.get('session_id')}")
    return Attempt(Outcome.DELIVERED, result)


def attempt(transport: Transport, tool: str, arguments: dict[str, Any]) -> Attempt:
    """Call a tool once and classify what happened."""
    try:
        result = transport.call(tool, arguments)
    except CredentialsError as exc:
        return Attempt(Outcome.CREDENTIALS, {}, str(exc))
    except RequestRefused as exc:
        return Attempt(Outcome.REFUSED, {}, str(exc))
    except TransportError as exc:
        return Attempt(Outcome.TRANSIENT, {}, str(exc))
    return classify(tool, result)
