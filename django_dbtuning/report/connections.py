"""Connections: by state and application_name, waiting and blocked sessions,
idle-in-transaction and long-running queries, usage against max_connections, replication.

One function per finding code, listed in :data:`CHECKS`: each reads the
:class:`ConnectionFacts` and adds its findings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django_dbtuning.report.humanize import human_bytes, human_seconds, iso
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import literal
from django_dbtuning.report.sqltext import query_text

ACTIVITY = """
SELECT pid, datname AS database, usename AS "user", application_name,
       client_addr::text AS client_addr, backend_type, state, wait_event_type, wait_event,
       backend_start, xact_start, query_start, state_change, {query_id} AS query_id,
       left(query, 2000) AS query,
       EXTRACT(EPOCH FROM now() - query_start)::float8 AS query_seconds,
       EXTRACT(EPOCH FROM now() - xact_start)::float8 AS xact_seconds,
       EXTRACT(EPOCH FROM now() - state_change)::float8 AS state_seconds,
       CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) END AS blocked_by,
       pid = pg_backend_pid() AS is_self
  FROM pg_stat_activity
"""

REPLICATION = """
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag_seconds,
       (SELECT count(*) FROM pg_stat_replication) AS replicas
"""

SLOTS = """
SELECT slot_name AS name, slot_type AS type, active, database,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
       END AS retained_bytes
  FROM pg_replication_slots
"""

STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)


@dataclass
class ConnectionFacts:
    clients: list[Row]
    """Client sessions on the server, this report's own left out."""
    here: list[Row]
    """Those of them on this database."""
    usable: int
    """max_connections minus the reserved ones."""
    replication: Row | None
    slots: list[Row] | None

    @property
    def total(self) -> int:
        # The report's own connection counts against the limit too.
        return len(self.clients) + 1

    @property
    def by_app(self) -> Counter[str]:
        return Counter(r["application_name"] or "(none)" for r in self.here)


def _query_text(probe: Probe, row: Row) -> str:
    return query_text(row["query"], show_values=probe.show_sql_values)


def _cancel(pid: Any) -> str:
    return f"SELECT pg_cancel_backend({int(pid)})"


def _who(row: Row) -> str:
    parts = [row["application_name"] or "", row["user"] or "", row["client_addr"] or ""]
    return ", ".join(p for p in parts if p)


def connections_near_limit(probe: Probe, facts: ConnectionFacts) -> None:
    t = probe.t
    total, usable = facts.total, facts.usable
    ratio = total / usable
    if ratio < t["connections_warning_ratio"]:
        return
    top = ", ".join(f"{app} {n}" for app, n in facts.by_app.most_common(5))
    probe.add(
        "error" if ratio >= t["connections_error_ratio"] else "warning",
        "connections_near_limit",
        f"{total} of {usable} usable connections in use ({ratio:.0%})",
        detail=(
            f"The server has {total} connections open against max_connections "
            f"{probe.server.get('max_connections')} minus "
            f"{probe.server.get('reserved_connections')} reserved; new connections fail "
            f"with 'too many clients' at the limit. Largest users here: {top or 'n/a'}."
        ),
        hint=(
            "size the pools with django_dbtuning.pool.database() (dbreport --section "
            "pool shows the arithmetic), put PgBouncer in front, or raise max_connections"
        ),
        object=f"server:{probe.server.get('database')}",
        connections=total,
        usable=usable,
    )


def idle_in_transaction(probe: Probe, facts: ConnectionFacts) -> None:
    for row in facts.here:
        seconds = row["state_seconds"] or 0
        if not (row["state"] or "").startswith("idle in transaction") or (
            seconds < probe.t["idle_in_transaction_seconds"]
        ):
            continue
        probe.add(
            "warning",
            "idle_in_transaction",
            f"Session {row['pid']} idle in transaction for {human_seconds(seconds)}",
            detail=(
                f"pid {row['pid']} ({_who(row)}) opened a transaction "
                f"{human_seconds(row['xact_seconds'])} ago and has been idle for "
                f"{human_seconds(seconds)}: it holds its locks and a pooled connection, "
                "and stops VACUUM from removing dead rows. Last query: "
                f"{_query_text(probe, row)}"
            ),
            hint=(
                "find the code that leaves transaction.atomic() open while doing slow "
                "work (HTTP calls, file I/O) and move that work out; set "
                "idle_in_transaction_session_timeout "
                "(database(idle_in_transaction_session_timeout='30s'))"
            ),
            object=f"pid:{row['pid']}",
            pid=row["pid"],
            seconds=seconds,
        )


def _blocked(probe: Probe, row: Row) -> bool:
    """An active query waiting for a lock longer than the blocked threshold."""
    return bool(
        row["state"] == "active"
        and row["blocked_by"]
        and (row["query_seconds"] or 0) >= probe.t["blocked_query_seconds"]
    )


def blocked_query(probe: Probe, facts: ConnectionFacts) -> None:
    by_pid = {r["pid"]: r for r in facts.here}
    for row in facts.here:
        if not _blocked(probe, row):
            continue
        seconds = row["query_seconds"] or 0
        blockers = row["blocked_by"]
        blocker = by_pid.get(blockers[0])
        by = (
            f"pid {blockers[0]} ({_who(blocker)}, {blocker['state']}: "
            f"{_query_text(probe, blocker)})"
            if blocker
            else f"pid {blockers[0]}"
        )
        probe.add(
            "warning",
            "blocked_query",
            f"Session {row['pid']} blocked for {human_seconds(seconds)}",
            detail=(
                f"pid {row['pid']} ({_who(row)}) has waited {human_seconds(seconds)} "
                f"for a lock held by {by}. Waiting query: {_query_text(probe, row)}"
            ),
            hint=(
                "keep transactions that take row or table locks short; set lock_timeout "
                "for migrations and statement_timeout for requests; if stuck: "
                f"{_cancel(blockers[0])}"
            ),
            object=f"pid:{row['pid']}",
            pid=row["pid"],
            seconds=seconds,
            blocked_by=list(blockers),
            sql=[_cancel(blockers[0])],
        )


def long_running_query(probe: Probe, facts: ConnectionFacts) -> None:
    for row in facts.here:
        seconds = row["query_seconds"] or 0
        # A blocked query is reported as blocked_query, not twice.
        if (
            row["state"] != "active"
            or _blocked(probe, row)
            or seconds < probe.t["long_running_query_seconds"]
        ):
            continue
        probe.add(
            "warning",
            "long_running_query",
            f"Query running for {human_seconds(seconds)} (pid {row['pid']})",
            detail=(
                f"pid {row['pid']} ({_who(row)}) started {iso(row['query_start'])}: "
                f"{_query_text(probe, row)}"
            ),
            hint=(
                "EXPLAIN (ANALYZE, BUFFERS) it on a copy; give requests a "
                "statement_timeout (database(statement_timeout='5s')) and run reports "
                f"on a replica or a separate alias; cancel with {_cancel(row['pid'])}"
            ),
            object=f"pid:{row['pid']}",
            pid=row["pid"],
            seconds=seconds,
            sql=[_cancel(row["pid"])],
        )


def replication_lag(probe: Probe, facts: ConnectionFacts) -> None:
    lag = (facts.replication or {}).get("lag_seconds")
    if lag is None or lag < probe.t["replication_lag_seconds"]:
        return
    probe.add(
        "warning",
        "replication_lag",
        f"Replica {human_seconds(lag)} behind",
        detail=(
            f"This replica last replayed a transaction {human_seconds(lag)} ago "
            "while WAL is still arriving: reads routed here return data that old "
            "(a read-your-writes problem for users who just saved something)."
        ),
        hint=(
            "look for long queries on the replica (hot_standby_feedback, "
            "max_standby_streaming_delay) and for I/O or network limits; route "
            "reads that must be fresh to the primary "
            "(django_dbtuning.routers.use_primary())"
        ),
        object=f"replica:{probe.alias}",
        lag_seconds=lag,
    )


def inactive_replication_slot(probe: Probe, facts: ConnectionFacts) -> None:
    inactive = [s for s in facts.slots or [] if not s["active"]]
    for slot in inactive:
        retained = slot["retained_bytes"]
        drop = f"SELECT pg_drop_replication_slot({literal(slot['name'])})"
        probe.add(
            "warning",
            "inactive_replication_slot",
            f"Replication slot {slot['name']} is inactive",
            detail=(
                f"{slot['type']} slot {slot['name']} has no consumer"
                + (f" and retains {human_bytes(retained)} of WAL" if retained else "")
                + ": the server keeps WAL (and, for logical slots, old row versions) "
                "until it reconnects, filling the disk and holding back VACUUM."
            ),
            hint=(
                f"reconnect its replica or consumer, or drop it if abandoned: {drop};"
            ),
            object=f"slot:{slot['name']}",
            retained_bytes=retained,
            sql=[drop],
        )


CHECKS: dict[str, Callable[[Probe, ConnectionFacts], None]] = {
    "connections_near_limit": connections_near_limit,
    "idle_in_transaction": idle_in_transaction,
    "blocked_query": blocked_query,
    "long_running_query": long_running_query,
    "replication_lag": replication_lag,
    "inactive_replication_slot": inactive_replication_slot,
}


def _summary(probe: Probe, facts: ConnectionFacts) -> dict[str, Any]:
    clients = facts.clients
    by_state = Counter(r["state"] or "unknown" for r in clients)
    return {
        "total": facts.total,
        "max_connections": probe.server.get("max_connections") or 0,
        "reserved_connections": probe.server.get("reserved_connections") or 0,
        "usage_ratio": facts.total / facts.usable,
        "by_state": {
            state: by_state.get(state, 0) + (state == "active")  # + this report
            for state in (*STATES, "unknown")
        },
        "this_database": len(facts.here) + 1,
        "by_application": dict(facts.by_app.most_common(probe.top or None)),
        "waiting": sum(1 for r in clients if r["wait_event_type"] == "Lock"),
        "blocked": sum(1 for r in clients if r["blocked_by"]),
        "hidden": sum(1 for r in clients if r["state"] is None and r["query"] is None),
        "longest_query_seconds": max(
            (r["query_seconds"] or 0 for r in clients if r["state"] == "active"),
            default=0,
        ),
        "longest_transaction_seconds": max(
            (r["xact_seconds"] or 0 for r in clients), default=0
        ),
        "idle_in_transaction_max_seconds": max(
            (
                r["state_seconds"] or 0
                for r in clients
                if (r["state"] or "").startswith("idle in transaction")
            ),
            default=0,
        ),
    }


def gather(probe: Probe) -> ConnectionFacts | None:
    """The section's queries, in the order their checks are listed; None when the
    sessions could not be read."""
    query_id = probe.optional_column("pg_stat_activity", "query_id", "bigint")
    rows = probe.query("activity", "connections", ACTIVITY.format(query_id=query_id))
    if rows is None:
        return None
    clients = [
        r for r in rows if not r["is_self"] and r["backend_type"] == "client backend"
    ]
    hidden = sum(1 for r in clients if r["state"] is None and r["query"] is None)
    if hidden:
        probe.gap(
            "activity_of_other_roles",
            "connections",
            "partial",
            f"{hidden} session(s) of other roles are hidden (their state and "
            "queries: no long-running, idle-in-transaction or blocked judgement)",
            expected=True,
            fix=f"{probe.grant_pg_monitor()} to see their state and queries",
        )
    replication = probe.query("replication", "connections", REPLICATION)
    max_connections = probe.server.get("max_connections") or 0
    reserved = probe.server.get("reserved_connections") or 0
    return ConnectionFacts(
        clients=clients,
        here=[r for r in clients if r["database"] == probe.server.get("database")],
        usable=max(1, max_connections - reserved),
        replication=replication[0] if replication else None,
        slots=probe.query("replication_slots", "connections", SLOTS),
    )


def collect(probe: Probe) -> None:
    section = probe.section("connections")
    facts = gather(probe)
    if facts is None:
        return
    section.update(_summary(probe, facts))
    probe.judge(CHECKS, facts)
    if facts.replication is not None:
        section["replication"] = {
            key: facts.replication[key]
            for key in ("in_recovery", "lag_seconds", "replicas")
        }
    if facts.slots is not None:
        section["replication_slots"] = len(facts.slots)
        section["inactive_replication_slots"] = sum(
            1 for s in facts.slots if not s["active"]
        )
