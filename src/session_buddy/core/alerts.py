"""Alert rules and the alerts they raise, as transactions on the store.

A rule names a condition (`CONDITIONS`), filters and channels. An alert is open for one
rule and one subject (a session id, or `component:NAME` for a crash rate) until its
condition clears, so each condition is told once. Opening or clearing an alert writes
its outbox rows (one per channel) in the same transaction; a server's deliverer
(`app/alerting.py`) claims them from there, one server at a time.

Conditions of a transition (failing, crashed, abandoned) are raised by the transition
itself (`raise_for_session`, from core/transitions.py); conditions of time (waiting,
stuck, crash-rate) and every clearing are found by `assess`, run by the server every
second, and written by `apply`.
"""

from __future__ import annotations

import json
from typing import NamedTuple

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from session_buddy.core.store.base import Row, Tx

CONDITIONS = ("waiting", "failing", "crashed", "abandoned", "stuck", "crash-rate")
# What --for means per condition, and its default (seconds).
DEFAULT_FOR = {"waiting": 60.0, "stuck": 600.0}
DEFAULT_FACTOR = 3.0  # stuck: active longer than this many times the component's p90
STUCK_MIN_SESSIONS = 20  # ... of at least this many cleanly ended sessions
DEFAULT_BELOW = 95.0  # crash-rate: crash-free % of the last hour's finished sessions
RATE_MIN_SESSIONS = 5  # ... once the hour has at least this many
RATE_WINDOW_US = 3_600_000_000
KEEP_US = 7 * 86_400_000_000  # delivered outbox rows and cleared alerts, kept this long
_US = 1_000_000


class AlertRule(NamedTuple):
    """A rule as stored; the filters that are None match every session."""

    name: str
    condition: str
    channels: tuple[str, ...]
    for_seconds: float | None = None
    below: float | None = None
    factor: float | None = None
    component_name: str | None = None
    hostname: str | None = None
    username: str | None = None
    cwd_prefix: str | None = None
    resolved: bool = False  # also say when the condition clears
    created_us: int = 0

    def matches(self, session: Mapping[str, Any]) -> bool:
        """Does a session (a row with these columns) meet every filter? A cwd prefix
        matches whole path components: /srv/app matches /srv/app/x, not /srv/apple."""
        for column in ("component_name", "hostname", "username"):
            wanted = getattr(self, column)
            if wanted is not None and session[column] != wanted:
                return False
        prefix, cwd = self.cwd_prefix, str(session["cwd"])
        return prefix is None or cwd == prefix or cwd.startswith(prefix.rstrip("/") + "/")

    def threshold(self) -> float:
        """Seconds of --for (waiting, stuck's silence)."""
        given = self.for_seconds
        return DEFAULT_FOR.get(self.condition, 0.0) if given is None else given


class Firing(NamedTuple):
    """A condition that holds for one rule and subject, with what the alert will say."""

    rule_name: str
    subject: str
    condition: str
    facts: dict[str, Any]


class Clearing(NamedTuple):
    alert_id: int
    rule_name: str
    quiet: bool  # the subject is gone (pruned): no "resolved" notice


class Assessment(NamedTuple):
    opening: list[Firing]
    clearing: list[Clearing]


_RULE_COLUMNS = ", ".join(AlertRule._fields)


def _rule(row: Row) -> AlertRule:
    values = dict(row)
    values["channels"] = tuple(json.loads(values["channels"]))
    values["resolved"] = bool(values["resolved"])
    return AlertRule(**values)


def rules(tx: Tx, condition: str | None = None) -> list[AlertRule]:
    """The stored rules by name, or those of one condition."""
    where, params = ("", ()) if condition is None else (" WHERE condition = $1", (condition,))
    rows = tx.all(f"SELECT {_RULE_COLUMNS} FROM alert_rules{where} ORDER BY name", params)
    return [_rule(row) for row in rows]


def save_rule(tx: Tx, rule: AlertRule, *, replace: bool = False) -> bool:
    """Store a rule; False when one of that name exists and `replace` is not given. A
    replaced rule's open alerts stay open (its channels are read when they clear)."""
    values = rule._asdict() | {
        "channels": json.dumps(list(rule.channels)),
        "resolved": int(rule.resolved),
    }
    placeholders = ", ".join(f"${number}" for number in range(1, len(values) + 1))
    if replace:
        tx.run("DELETE FROM alert_rules WHERE name = $1", (rule.name,))
    inserted = tx.one(
        f"INSERT INTO alert_rules ({_RULE_COLUMNS}) VALUES ({placeholders}) "
        "ON CONFLICT DO NOTHING RETURNING name",
        tuple(values.values()),
    )
    return inserted is not None


def remove_rule(tx: Tx, name: str, now_us: int) -> bool:
    """Delete a rule, clear its open alerts and drop what is still to be sent of them."""
    if not tx.run("DELETE FROM alert_rules WHERE name = $1", (name,)):
        return False
    tx.run(
        "DELETE FROM alert_outbox WHERE delivered_us IS NULL AND alert_id IN "
        "(SELECT id FROM alerts WHERE rule_name = $1)",
        (name,),
    )
    tx.run(
        "UPDATE alerts SET cleared_us = $1 WHERE rule_name = $2 AND cleared_us IS NULL",
        (now_us, name),
    )
    return True


# What an alert tells of its session.
_SESSION_FACTS = (
    "session_id, component_name, hostname, username, cwd, status, activity, activity_us, "
    "activity_detail, end_reason, started_us, received_us"
)


def _facts(session: Row, reason: str | None) -> dict[str, Any]:
    facts = {
        name: session[name]
        for name in (
            "session_id",
            "component_name",
            "hostname",
            "username",
            "cwd",
            "status",
            "activity",
        )
    }
    return facts | {"reason": reason}


def raise_for_session(
    tx: Tx, condition: str, session_id: str, reason: str | None, now_us: int
) -> None:
    """Open an alert for each rule of a transition's `condition` that the session meets
    (in the transition's own transaction). Without such rules, one small read."""
    candidates = rules(tx, condition)
    if not candidates:
        return
    session = tx.one(f"SELECT {_SESSION_FACTS} FROM sessions WHERE session_id = $1", (session_id,))
    if session is None:
        return
    for rule in candidates:
        if rule.matches(session):
            firing = Firing(rule.name, session_id, condition, _facts(session, reason))
            open_alert(tx, rule, firing, now_us)


def open_alert(tx: Tx, rule: AlertRule, firing: Firing, now_us: int) -> int | None:
    """Open the alert and queue it for every channel, unless it is open already. A crash
    is told and closed at once: a crashed session never changes again, and closed alerts
    are forgotten after KEEP_US."""
    cleared_us = now_us if firing.condition == "crashed" else None
    opened = tx.one(
        "INSERT INTO alerts (rule_name, subject, condition, opened_us, cleared_us, facts) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
        (
            rule.name,
            firing.subject,
            firing.condition,
            now_us,
            cleared_us,
            json.dumps(firing.facts),
        ),
    )
    if opened is None:
        return None
    _enqueue(tx, int(opened["id"]), "firing", rule.channels, now_us)
    return int(opened["id"])


def _enqueue(tx: Tx, alert_id: int, kind: str, channels: Iterable[str], now_us: int) -> None:
    for channel in channels:
        tx.run(
            "INSERT INTO alert_outbox (alert_id, kind, channel, created_us, due_us, attempts) "
            "VALUES ($1, $2, $3, $4, $4, 0)",
            (alert_id, kind, channel, now_us),
        )


def _typical_reason(rule: AlertRule, session: Row, now_us: int, p90: float | None) -> str | None:
    """Why a `stuck` rule holds for an active session, or None."""
    ran = (now_us - int(session["started_us"])) / _US
    factor = DEFAULT_FACTOR if rule.factor is None else rule.factor
    if p90 is not None and ran > factor * p90:
        return f"running {ran:.0f} s, over {factor:g} × the p90 of its component ({p90:.0f} s)"
    silent = (now_us - int(session["received_us"])) / _US
    if session["activity"] == "working" and silent >= rule.threshold():
        return f"working but silent for {silent:.0f} s"
    return None


def _holds(rule: AlertRule, session: Row, now_us: int, typical: Mapping[str, float]) -> str | None:
    """Why a condition of time holds for an active session, or None."""
    if rule.condition == "waiting":
        if session["activity"] != "waiting_for_input" or session["activity_us"] is None:
            return None
        waited = (now_us - int(session["activity_us"])) / _US
        return f"waiting for input for {waited:.0f} s" if waited >= rule.threshold() else None
    return _typical_reason(rule, session, now_us, typical.get(str(session["component_name"])))


def typical_duration(tx: Tx, component_name: str) -> float | None:
    """The p90 duration of a component's cleanly ended sessions (nearest rank), or None
    with fewer than STUCK_MIN_SESSIONS of them."""
    where = "WHERE component_name = $1 AND status = 'ended' AND duration_seconds IS NOT NULL"
    counted = tx.one(f"SELECT COUNT(*) AS n FROM sessions {where}", (component_name,))
    total = int(counted["n"]) if counted else 0
    if total < STUCK_MIN_SESSIONS:
        return None
    rank = -(-9 * total // 10) - 1  # nearest rank: ceil(0.9 n), from 0
    row = tx.one(
        f"SELECT duration_seconds FROM sessions {where} ORDER BY duration_seconds "
        "LIMIT 1 OFFSET $2",
        (component_name, rank),
    )
    return float(row["duration_seconds"]) if row else None


def typical_durations(tx: Tx) -> dict[str, float]:
    """typical_duration of each component that has an active session, where known."""
    components = tx.all("SELECT DISTINCT component_name FROM sessions WHERE status = 'active'")
    typical = {}
    for row in components:
        p90 = typical_duration(tx, str(row["component_name"]))
        if p90 is not None:
            typical[str(row["component_name"])] = p90
    return typical


def _narrowed(rule: AlertRule, first: int) -> tuple[str, tuple[Any, ...]]:
    """The rule's filters as SQL conditions (as AlertRule.matches reads them), numbered
    from placeholder `first`."""
    sql, params = "", []
    for column in ("component_name", "hostname", "username"):
        if getattr(rule, column) is not None:
            params.append(getattr(rule, column))
            sql += f" AND {column} = ${first + len(params) - 1}"
    if rule.cwd_prefix is not None:
        prefix = rule.cwd_prefix.rstrip("/")
        n = first + len(params)
        sql += f" AND (cwd = ${n} OR substr(cwd, 1, ${n + 1}) = ${n + 2})"
        params += [rule.cwd_prefix, len(prefix) + 1, prefix + "/"]
    return sql, tuple(params)


def _rate_firings(tx: Tx, rate_rules: list[AlertRule], now_us: int) -> list[Firing]:
    """Components whose crash-free share of the last hour's finished sessions is below a
    rule's --below (counted by the database, from the index of finished sessions)."""
    firings = []
    for rule in rate_rules:
        narrowed, params = _narrowed(rule, 2)
        counts = tx.all(
            "SELECT component_name, COUNT(*) AS total, "
            "SUM(CASE WHEN status = 'crashed' THEN 1 ELSE 0 END) AS crashed FROM sessions "
            f"WHERE status <> 'active' AND ended_us >= $1{narrowed} "
            "GROUP BY component_name ORDER BY component_name",
            (now_us - RATE_WINDOW_US, *params),
        )
        below = DEFAULT_BELOW if rule.below is None else rule.below
        for row in counts:
            total, crashed = int(row["total"]), int(row["crashed"])
            crash_free = 100.0 * (total - crashed) / total
            if total >= RATE_MIN_SESSIONS and crash_free < below:
                reason = (
                    f"crash-free {crash_free:.1f}% over the last hour ({crashed} of {total} "
                    f"finished sessions crashed), below {below:g}%"
                )
                component = str(row["component_name"])
                facts = {"component_name": component, "reason": reason}
                firings.append(Firing(rule.name, f"component:{component}", rule.condition, facts))
    return firings


def assess(
    tx: Tx, every_rule: list[AlertRule], now_us: int, typical: Mapping[str, float]
) -> Assessment:
    """What is to open (conditions of time that hold and have no open alert) and to clear
    (open alerts whose condition no longer holds), read in one snapshot. `typical`: the
    p90 of each component's clean sessions (see typical_duration)."""
    timed = [rule for rule in every_rule if rule.condition in ("waiting", "stuck")]
    active = (
        tx.all(f"SELECT {_SESSION_FACTS} FROM sessions WHERE status = 'active'") if timed else []
    )
    holding = [
        Firing(rule.name, str(session["session_id"]), rule.condition, _facts(session, reason))
        for rule in timed
        for session in active
        if rule.matches(session) and (reason := _holds(rule, session, now_us, typical))
    ]
    rate_rules = [rule for rule in every_rule if rule.condition == "crash-rate"]
    holding += _rate_firings(tx, rate_rules, now_us) if rate_rules else []
    held = {(firing.rule_name, firing.subject) for firing in holding}
    open_rows = tx.all(
        "SELECT a.id, a.rule_name, a.subject, a.condition, s.session_id, s.status, s.activity "
        "FROM alerts a LEFT JOIN sessions s ON s.session_id = a.subject "
        "WHERE a.cleared_us IS NULL"
    )
    is_open = {(row["rule_name"], row["subject"]) for row in open_rows}
    clearing = [
        Clearing(int(row["id"]), str(row["rule_name"]), quiet=_gone(row))
        for row in open_rows
        if not _still_holds(row, held)
    ]
    opening = [firing for firing in holding if (firing.rule_name, firing.subject) not in is_open]
    return Assessment(opening, clearing)


def _gone(alert: Row) -> bool:
    return alert["session_id"] is None and not str(alert["subject"]).startswith("component:")


def _still_holds(alert: Row, held: set[tuple[str, str]]) -> bool:
    condition = alert["condition"]
    if condition == "failing":
        return bool(alert["activity"] == "failing")
    if condition == "abandoned":
        return bool(alert["status"] == "abandoned")
    return (alert["rule_name"], alert["subject"]) in held


def apply(tx: Tx, assessment: Assessment, now_us: int) -> None:
    """Open and clear what `assess` found (another server may have done it first: an
    alert opens once, clears once)."""
    by_name = {rule.name: rule for rule in rules(tx)}
    for firing in assessment.opening:
        rule = by_name.get(firing.rule_name)
        if rule is not None:
            open_alert(tx, rule, firing, now_us)
    for clearing in assessment.clearing:
        cleared = tx.run(
            "UPDATE alerts SET cleared_us = $1 WHERE id = $2 AND cleared_us IS NULL",
            (now_us, clearing.alert_id),
        )
        rule = by_name.get(clearing.rule_name)
        if cleared and rule is not None and rule.resolved and not clearing.quiet:
            _enqueue(tx, clearing.alert_id, "resolved", rule.channels, now_us)


class Delivery(NamedTuple):
    """An outbox row claimed for delivery, with its alert."""

    id: int
    alert_id: int
    kind: str
    channel: str
    attempts: int
    rule_name: str
    condition: str
    opened_us: int
    facts: dict[str, Any]

    @property
    def key(self) -> str:
        """The idempotency key: the same for every attempt and channel of one notice."""
        return f"session-buddy-alert-{self.alert_id}-{self.kind}"


def claim(tx: Tx, owner: str, now_us: int, lease_us: int, limit: int = 16) -> list[Delivery]:
    """Take due outbox rows for `owner` until the lease ends (rows another server holds
    are skipped); a notice waits for the earlier ones of its alert on its channel."""
    due = tx.all(
        "SELECT o.id FROM alert_outbox o WHERE o.delivered_us IS NULL AND o.due_us <= $1 "
        "AND (o.claimed_until_us IS NULL OR o.claimed_until_us < $1) AND NOT EXISTS "
        "(SELECT 1 FROM alert_outbox e WHERE e.alert_id = o.alert_id AND e.channel = o.channel "
        f"AND e.id < o.id AND e.delivered_us IS NULL) ORDER BY o.id LIMIT $2{tx.lock_free_rows}",
        (now_us, limit),
    )
    claimed = []
    for row in due:
        tx.run(
            "UPDATE alert_outbox SET claimed_by = $1, claimed_until_us = $2 WHERE id = $3",
            (owner, now_us + lease_us, row["id"]),
        )
        found = tx.one(
            "SELECT o.id, o.alert_id, o.kind, o.channel, o.attempts, a.rule_name, a.condition, "
            "a.opened_us, a.facts FROM alert_outbox o JOIN alerts a ON a.id = o.alert_id "
            "WHERE o.id = $1",
            (row["id"],),
        )
        if found is not None:
            claimed.append(Delivery(**(dict(found) | {"facts": json.loads(found["facts"])})))
    return claimed


def delivered(tx: Tx, outbox_id: int, now_us: int) -> None:
    tx.run(
        "UPDATE alert_outbox SET delivered_us = $1, attempts = attempts + 1, claimed_by = NULL, "
        "claimed_until_us = NULL, last_error = NULL WHERE id = $2 AND delivered_us IS NULL",
        (now_us, outbox_id),
    )


def retry_later(tx: Tx, outbox_id: int, due_us: int, error: str | None) -> None:
    """Put a claimed row back, due at `due_us`: after a failed attempt (`error`), or
    unattempted (None: its channel's rate limit)."""
    attempted = 1 if error is not None else 0
    tx.run(
        "UPDATE alert_outbox SET due_us = $1, attempts = attempts + $2, claimed_by = NULL, "
        "claimed_until_us = NULL, last_error = COALESCE($3, last_error) "
        "WHERE id = $4 AND delivered_us IS NULL",
        (due_us, attempted, error, outbox_id),
    )


def anything_due(tx: Tx, now_us: int) -> bool:
    found = tx.one(
        "SELECT 1 AS due FROM alert_outbox WHERE delivered_us IS NULL AND due_us <= $1 LIMIT 1",
        (now_us,),
    )
    return found is not None


def forget_old(tx: Tx, now_us: int) -> int:
    """Delete delivered outbox rows and cleared alerts older than KEEP_US."""
    cutoff = now_us - KEEP_US
    gone = tx.run(
        "DELETE FROM alert_outbox WHERE delivered_us IS NOT NULL AND delivered_us < $1", (cutoff,)
    )
    return gone + tx.run(
        "DELETE FROM alerts WHERE cleared_us IS NOT NULL AND cleared_us < $1 AND NOT EXISTS "
        "(SELECT 1 FROM alert_outbox o WHERE o.alert_id = alerts.id)",
        (cutoff,),
    )


class RuleSummary(NamedTuple):
    rule: AlertRule
    open_alerts: int
    pending: int  # notices not yet delivered
    last_error: str | None


def summaries(tx: Tx) -> list[RuleSummary]:
    """Every rule with its open alerts, undelivered notices and their last error."""
    counts = {
        row["rule_name"]: row
        for row in tx.all(
            "SELECT a.rule_name, "
            "COUNT(DISTINCT CASE WHEN a.cleared_us IS NULL THEN a.id END) AS open_alerts, "
            "COUNT(CASE WHEN o.id IS NOT NULL AND o.delivered_us IS NULL THEN 1 END) AS pending, "
            "MAX(CASE WHEN o.delivered_us IS NULL THEN o.last_error END) AS last_error "
            "FROM alerts a LEFT JOIN alert_outbox o ON o.alert_id = a.id GROUP BY a.rule_name"
        )
    }
    summary = []
    for rule in rules(tx):
        row = counts.get(rule.name)
        summary.append(
            RuleSummary(
                rule,
                int(row["open_alerts"]) if row else 0,
                int(row["pending"]) if row else 0,
                row["last_error"] if row else None,
            )
        )
    return summary
