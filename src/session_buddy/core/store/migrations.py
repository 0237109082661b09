"""Versioned schema migrations, shared by SQLite and PostgreSQL."""

from __future__ import annotations

from typing import NamedTuple

from session_buddy.core.states import SessionStatus

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from session_buddy.core.store.base import Tx

_STATES = ", ".join(f"'{status.value}'" for status in SessionStatus)
# The stats groupings the first migrations made indexes for (later ones add their own).
_V1_GROUP_KEYS = ("component_name", "shell_type", "hostname", "username")


class Migration(NamedTuple):
    version: int
    name: str
    statements: tuple[str, ...]
    # Where an engine needs other statements than `statements` (by dialect).
    dialects: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        return dict(self.dialects).get(dialect, self.statements)


# `{id}` becomes the engine's auto-increment primary key column type, `{states}` the
# session states.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "sessions and event log",
        (
            """CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                component_name TEXT NOT NULL,
                shell_type TEXT NOT NULL,
                pid INTEGER NOT NULL,
                hostname TEXT NOT NULL,
                username TEXT NOT NULL,
                home TEXT NOT NULL,
                cwd TEXT NOT NULL,
                python_version TEXT NOT NULL,
                platform TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ({states})),
                started_us BIGINT NOT NULL,
                ended_us BIGINT,
                last_seen_us BIGINT NOT NULL,
                received_us BIGINT NOT NULL,
                duration_seconds DOUBLE PRECISION,
                end_reason TEXT,
                exit_code INTEGER,
                start_metadata TEXT NOT NULL,
                end_metadata TEXT,
                external_id TEXT,
                previous_session_id TEXT
            )""",
            "CREATE INDEX sessions_by_start ON sessions (started_us, session_id)",
            "CREATE INDEX sessions_by_status ON sessions (status, started_us, session_id)",
            "CREATE INDEX sessions_by_component ON sessions "
            "(component_name, started_us, session_id)",
            "CREATE INDEX sessions_by_shell ON sessions (shell_type, started_us, session_id)",
            "CREATE INDEX sessions_by_host ON sessions (hostname, started_us, session_id)",
            "CREATE INDEX sessions_by_user ON sessions (username, started_us, session_id)",
            # session_stats: counts and nearest-rank percentiles per group, read from the
            # index alone.
            *(
                f"CREATE INDEX sessions_stats_by_{key} ON sessions "
                f"({key}, status, duration_seconds, started_us)"
                for key in _V1_GROUP_KEYS
            ),
            "CREATE INDEX sessions_active_by_process ON sessions (hostname, pid, started_us) "
            "WHERE status = 'active'",
            "CREATE INDEX sessions_active_by_receipt ON sessions (received_us) "
            "WHERE status = 'active'",
            "CREATE INDEX sessions_by_external_id ON sessions (external_id, started_us) "
            "WHERE external_id IS NOT NULL",
            # At most one running session per external id (e.g. a Claude Code session).
            "CREATE UNIQUE INDEX sessions_active_external_id ON sessions (external_id) "
            "WHERE status = 'active' AND external_id IS NOT NULL",
            """CREATE TABLE events (
                id {id},
                received_us BIGINT NOT NULL,
                event_type TEXT NOT NULL,
                session_id TEXT,
                event_id TEXT,
                outcome TEXT NOT NULL,
                payload TEXT NOT NULL
            )""",
        ),
    ),
)

_V1 = MIGRATIONS[0].statements
_V1_INDEXES = tuple(statement for statement in _V1 if " INDEX " in statement)
_V2_COLUMNS = ("activity TEXT", "activity_us BIGINT", "parent_session_id TEXT")
# Partial: most sessions never report an activity, and their inserts need not pay for it.
_V2_INDEX = (
    "CREATE INDEX sessions_by_activity ON sessions (activity, started_us, session_id) "
    "WHERE activity IS NOT NULL"
)


def _sqlite_v2() -> tuple[str, ...]:
    """SQLite cannot drop NOT NULL in place: copy the sessions into a table made from
    version 1's own definition, pid nullable and the new columns added, then rebuild
    version 1's indexes on it."""
    [create] = [statement for statement in _V1 if statement.startswith("CREATE TABLE sessions")]
    create = create.replace("CREATE TABLE sessions", "CREATE TABLE sessions_v2", 1)
    create = create.replace("pid INTEGER NOT NULL", "pid INTEGER", 1)
    create = create.rstrip()[:-1].rstrip() + ",\n" + ",\n".join(_V2_COLUMNS) + "\n)"
    return (
        create,
        "INSERT INTO sessions_v2 SELECT *, NULL, NULL, NULL FROM sessions",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_v2 RENAME TO sessions",
        *_V1_INDEXES,
        _V2_INDEX,
    )


MIGRATIONS += (
    Migration(
        2,
        "activity, parent sessions, sessions without a known pid",
        (
            "ALTER TABLE sessions ALTER COLUMN pid DROP NOT NULL",
            *(f"ALTER TABLE sessions ADD COLUMN {column}" for column in _V2_COLUMNS),
            _V2_INDEX,
        ),
        dialects=(("sqlite", _sqlite_v2()),),
    ),
)

# A session's event log is read and pruned by session; events of no session (an end
# for an unknown one) by age, through a partial index only they pay for.
_V3_INDEXES = (
    "CREATE INDEX events_by_session ON events (session_id, id)",
    "CREATE INDEX events_without_session ON events (received_us) WHERE session_id IS NULL",
)
MIGRATIONS += (
    Migration(
        3,
        "64-bit exit codes (Windows crash codes); event log by session, for reading and pruning",
        ("ALTER TABLE sessions ALTER COLUMN exit_code TYPE BIGINT", *_V3_INDEXES),
        dialects=(("sqlite", _V3_INDEXES),),  # SQLite's INTEGER is 64-bit already
    ),
)

# Active sessions are few and short-lived: the status and stats indexes leave them out,
# so a start writes none of them and an end adds one entry to each instead of moving it.
# Queries on finished sessions say `status <> 'active'`, so that SQLite sees they may use
# these; active sessions are found by the partial indexes made for them.
_FINISHED = "WHERE status <> 'active'"
_V4_INDEXES = (
    f"CREATE INDEX sessions_by_status ON sessions (status, started_us, session_id) {_FINISHED}",
    *(
        f"CREATE INDEX sessions_stats_by_{key} ON sessions "
        f"({key}, status, duration_seconds, started_us) {_FINISHED}"
        for key in _V1_GROUP_KEYS
    ),
)
_V4 = (
    # events_by_session serves events without a session too (session_id IS NULL, by id).
    "DROP INDEX events_without_session",
    # Active sessions newest first (the dashboard's "now"), counted (health), and checked
    # for silence by the reaper, which reads them all anyway: one index by start serves all.
    "DROP INDEX sessions_active_by_receipt",
    "CREATE INDEX sessions_active_by_start ON sessions (started_us, session_id) "
    "WHERE status = 'active'",
    "DROP INDEX sessions_by_status",
    *(f"DROP INDEX sessions_stats_by_{key}" for key in _V1_GROUP_KEYS),
    *_V4_INDEXES,
)
MIGRATIONS += (
    Migration(4, "status and stats indexes of finished sessions only; no redundant index", _V4),
)

# Retention deletes finished sessions by their last activity (ended_us, which an abandoned
# session has too); a second delivery of an end, or of a resuming start, is found by its
# event id (starts that made a session are found in sessions, so they stay out). A
# session started with a token belongs to its subject.
MIGRATIONS += (
    Migration(
        5,
        "finished sessions by last activity; ends and resumes by event id; owners; why an "
        "activity (a failure's reason)",
        (
            "ALTER TABLE sessions ADD COLUMN owner TEXT",
            "ALTER TABLE sessions ADD COLUMN activity_detail TEXT",
            "CREATE INDEX sessions_finished_by_end ON sessions (ended_us) WHERE status <> 'active'",
            "CREATE INDEX events_by_event_id ON events (event_id) WHERE event_id IS NOT NULL "
            "AND (event_type = 'session_end' OR outcome = 'resumed')",
        ),
    ),
)

# Alerts (core/alerts.py): the rules every server shares; one open alert per rule and
# subject (a session, or a component) until it clears; an outbox row per alert, kind and
# channel, written in the transaction that raised it and taken by one server at a time.
MIGRATIONS += (
    Migration(
        6,
        "alert rules, alerts and their outbox",
        (
            """CREATE TABLE alert_rules (
                name TEXT PRIMARY KEY,
                condition TEXT NOT NULL,
                for_seconds DOUBLE PRECISION,
                below DOUBLE PRECISION,
                factor DOUBLE PRECISION,
                component_name TEXT,
                hostname TEXT,
                username TEXT,
                cwd_prefix TEXT,
                channels TEXT NOT NULL,
                resolved INTEGER NOT NULL,
                created_us BIGINT NOT NULL
            )""",
            """CREATE TABLE alerts (
                id {id},
                rule_name TEXT NOT NULL,
                subject TEXT NOT NULL,
                condition TEXT NOT NULL,
                opened_us BIGINT NOT NULL,
                cleared_us BIGINT,
                facts TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX alerts_open ON alerts (rule_name, subject) "
            "WHERE cleared_us IS NULL",
            """CREATE TABLE alert_outbox (
                id {id},
                alert_id BIGINT NOT NULL,
                kind TEXT NOT NULL,
                channel TEXT NOT NULL,
                created_us BIGINT NOT NULL,
                due_us BIGINT NOT NULL,
                attempts INTEGER NOT NULL,
                claimed_by TEXT,
                claimed_until_us BIGINT,
                delivered_us BIGINT,
                last_error TEXT
            )""",
            "CREATE INDEX alert_outbox_due ON alert_outbox (due_us) WHERE delivered_us IS NULL",
            "CREATE INDEX alert_outbox_by_alert ON alert_outbox (alert_id, id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "stats by working directory",
        (
            "CREATE INDEX sessions_stats_by_cwd ON sessions "
            f"(cwd, status, duration_seconds, started_us) {_FINISHED}",
        ),
    ),
)

# Usage per session from OpenTelemetry (core/usage.py): running sums, and counts by
# model, tool and error. Rows of a client session id whose session has not started yet
# are kept by that id (session_id NULL) until it starts.
MIGRATIONS += (
    Migration(
        8,
        "usage per session from OpenTelemetry",
        (
            """CREATE TABLE session_usage (
                session_id TEXT,
                external_key TEXT,
                api_requests BIGINT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cache_read_tokens BIGINT NOT NULL,
                cache_creation_tokens BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL,
                api_ms BIGINT NOT NULL,
                api_errors BIGINT NOT NULL,
                tool_calls BIGINT NOT NULL,
                tool_failures BIGINT NOT NULL,
                prompts BIGINT NOT NULL,
                active_seconds DOUBLE PRECISION NOT NULL,
                first_us BIGINT NOT NULL,
                last_us BIGINT NOT NULL
            )""",
            "CREATE UNIQUE INDEX session_usage_by_session ON session_usage (session_id) "
            "WHERE session_id IS NOT NULL",
            "CREATE UNIQUE INDEX session_usage_waiting ON session_usage (external_key) "
            "WHERE session_id IS NULL",
            """CREATE TABLE usage_details (
                session_id TEXT,
                external_key TEXT,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                count BIGINT NOT NULL,
                failures BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION NOT NULL
            )""",
            "CREATE UNIQUE INDEX usage_details_by_session ON usage_details "
            "(session_id, kind, name) WHERE session_id IS NOT NULL",
            "CREATE UNIQUE INDEX usage_details_waiting ON usage_details "
            "(external_key, kind, name) WHERE session_id IS NULL",
            """CREATE TABLE usage_series (
                series TEXT PRIMARY KEY,
                value DOUBLE PRECISION NOT NULL,
                updated_us BIGINT NOT NULL
            )""",
            "CREATE INDEX usage_series_by_update ON usage_series (updated_us)",
            "CREATE INDEX session_usage_waiting_since ON session_usage (last_us) "
            "WHERE session_id IS NULL",
        ),
    ),
)

# The dashboard links a session to the sessions that continue it and to its subagents.
MIGRATIONS += (
    Migration(
        9,
        "links to continuations and subagents",
        (
            "CREATE INDEX sessions_by_parent ON sessions (parent_session_id, started_us) "
            "WHERE parent_session_id IS NOT NULL",
            "CREATE INDEX sessions_by_previous ON sessions (previous_session_id, started_us) "
            "WHERE previous_session_id IS NOT NULL",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
_ID_COLUMN = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}


def ensure_version_table(tx: Tx) -> None:
    tx.run(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)"
    )


def current_version(tx: Tx) -> int:
    row = tx.one("SELECT MAX(version) AS version FROM schema_migrations")
    return int(row["version"]) if row and row["version"] is not None else 0


def schema_version(tx: Tx) -> int:
    """The database's schema version, read without creating anything (0 when new)."""
    exists = tx.one(
        "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        if tx.dialect == "sqlite"
        else "SELECT 1 AS found FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
    )
    return current_version(tx) if exists else 0


def apply_pending(tx: Tx, now_us: int) -> list[int]:
    """Apply every migration newer than the database; return the versions applied.

    The caller holds the engine's write lock, so concurrent openers apply each once.
    """
    ensure_version_table(tx)
    version = current_version(tx)
    if version > LATEST_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this session-buddy "
            f"(knows up to {LATEST_VERSION}); upgrade session-buddy"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        for statement in migration.statements_for(tx.dialect):
            tx.run(statement.replace("{id}", _ID_COLUMN[tx.dialect]).replace("{states}", _STATES))
        tx.run(
            "INSERT INTO schema_migrations (version, name, applied_us) VALUES ($1, $2, $3)",
            (migration.version, migration.name, now_us),
        )
        applied.append(migration.version)
    return applied
