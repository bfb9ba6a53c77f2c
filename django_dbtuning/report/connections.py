"""Connections: by state and application_name, waiting and blocked sessions,
idle-in-transaction and long-running queries, usage against max_connections."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django_dbtuning.report.humanize import human_bytes, human_seconds, iso
from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import literal
from django_dbtuning.report.sqltext import query_text

__all__ = ["collect"]

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


def collect(probe: Probe) -> None:
    section = probe.section("connections")
    query_id = (
        "query_id"
        if probe.has_column("pg_stat_activity", "query_id")
        else "NULL::bigint"
    )
    rows = probe.query("activity", "connections", ACTIVITY.format(query_id=query_id))
    if rows is None:
        return
    others = [r for r in rows if not r["is_self"]]
    clients = [r for r in others if r["backend_type"] == "client backend"]
    hidden = [r for r in clients if r["state"] is None and r["query"] is None]
    by_state = Counter(r["state"] or "unknown" for r in clients)
    here = [r for r in clients if r["database"] == probe.server.get("database")]
    by_app = Counter(r["application_name"] or "(none)" for r in here)
    max_connections = probe.server.get("max_connections") or 0
    reserved = probe.server.get("reserved_connections") or 0
    usable = max(1, max_connections - reserved)
    # The report's own connection counts against the limit too.
    total = len(clients) + 1
    section.update(
        {
            "total": total,
            "max_connections": max_connections,
            "reserved_connections": reserved,
            "usage_ratio": total / usable,
            "by_state": {
                state: by_state.get(state, 0) for state in (*STATES, "unknown")
            },
            "this_database": len(here) + 1,
            "by_application": dict(by_app.most_common(probe.top or None)),
            "waiting": sum(1 for r in clients if r["wait_event_type"] == "Lock"),
            "blocked": sum(1 for r in clients if r["blocked_by"]),
            "hidden": len(hidden),
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
    )
    by_state_total = section["by_state"]
    by_state_total["active"] += 1  # this report
    if hidden:
        probe.gap(
            "activity_of_other_roles",
            "connections",
            "partial",
            f"{len(hidden)} session(s) of other roles are hidden (their state and "
            "queries: no long-running, idle-in-transaction or blocked judgement)",
            expected=True,
            fix=f"{probe.grant_pg_monitor()} to see their state and queries",
        )
    _usage(probe, total, usable, by_app)
    _sessions(probe, here)
    _replication(probe)


def _usage(probe: Probe, total: int, usable: int, by_app: Counter[str]) -> None:
    t = probe.t
    ratio = total / usable
    if ratio < t["connections_warning_ratio"]:
        return
    top = ", ".join(f"{app} {n}" for app, n in by_app.most_common(5))
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


def _query_text(probe: Probe, row: Row) -> str:
    return query_text(row["query"], show_values=probe.show_sql_values)


def _cancel(pid: Any) -> str:
    return f"SELECT pg_cancel_backend({int(pid)})"


def _who(row: Row) -> str:
    parts = [row["application_name"] or "", row["user"] or "", row["client_addr"] or ""]
    return ", ".join(p for p in parts if p)


def _sessions(probe: Probe, rows: list[Row]) -> None:
    t = probe.t
    by_pid = {r["pid"]: r for r in rows}
    found: list[tuple[float, dict[str, Any]]] = []
    for row in rows:
        state = row["state"] or ""
        who = _who(row)
        if state.startswith("idle in transaction"):
            seconds = row["state_seconds"] or 0
            if seconds >= t["idle_in_transaction_seconds"]:
                found.append(
                    (
                        seconds,
                        {
                            "severity": "warning",
                            "code": "idle_in_transaction",
                            "title": f"Session {row['pid']} idle in transaction for "
                            f"{human_seconds(seconds)}",
                            "detail": (
                                f"pid {row['pid']} ({who}) opened a transaction "
                                f"{human_seconds(row['xact_seconds'])} ago and has been "
                                f"idle for {human_seconds(seconds)}: it holds its locks "
                                "and a pooled connection, and stops VACUUM from removing "
                                f"dead rows. Last query: {_query_text(probe, row)}"
                            ),
                            "hint": (
                                "find the code that leaves transaction.atomic() open "
                                "while doing slow work (HTTP calls, file I/O) and move "
                                "that work out; set idle_in_transaction_session_timeout "
                                "(database(idle_in_transaction_session_timeout='30s'))"
                            ),
                            "object": f"pid:{row['pid']}",
                            "data": {"pid": row["pid"], "seconds": seconds},
                        },
                    )
                )
        elif state == "active":
            seconds = row["query_seconds"] or 0
            blockers = row["blocked_by"] or []
            if blockers and seconds >= t["blocked_query_seconds"]:
                blocker = by_pid.get(blockers[0])
                by = (
                    f"pid {blockers[0]} ({_who(blocker)}, {blocker['state']}: "
                    f"{_query_text(probe, blocker)})"
                    if blocker
                    else f"pid {blockers[0]}"
                )
                found.append(
                    (
                        seconds,
                        {
                            "severity": "warning",
                            "code": "blocked_query",
                            "title": f"Session {row['pid']} blocked for "
                            f"{human_seconds(seconds)}",
                            "detail": (
                                f"pid {row['pid']} ({who}) has waited "
                                f"{human_seconds(seconds)} for a lock held by {by}. "
                                f"Waiting query: {_query_text(probe, row)}"
                            ),
                            "hint": (
                                "keep transactions that take row or table locks short; "
                                "set lock_timeout for migrations and statement_timeout "
                                f"for requests; if stuck: {_cancel(blockers[0])}"
                            ),
                            "object": f"pid:{row['pid']}",
                            "data": {
                                "pid": row["pid"],
                                "seconds": seconds,
                                "blocked_by": list(blockers),
                                "sql": [_cancel(blockers[0])],
                            },
                        },
                    )
                )
            elif seconds >= t["long_running_query_seconds"]:
                found.append(
                    (
                        seconds,
                        {
                            "severity": "warning",
                            "code": "long_running_query",
                            "title": f"Query running for {human_seconds(seconds)} "
                            f"(pid {row['pid']})",
                            "detail": (
                                f"pid {row['pid']} ({who}) started {iso(row['query_start'])}:"
                                f" {_query_text(probe, row)}"
                            ),
                            "hint": (
                                "EXPLAIN (ANALYZE, BUFFERS) it on a copy; give requests a "
                                "statement_timeout (database(statement_timeout='5s')) and "
                                "run reports on a replica or a separate alias; cancel with "
                                f"{_cancel(row['pid'])}"
                            ),
                            "object": f"pid:{row['pid']}",
                            "data": {
                                "pid": row["pid"],
                                "seconds": seconds,
                                "sql": [_cancel(row["pid"])],
                            },
                        },
                    )
                )
    found.sort(key=lambda item: item[0], reverse=True)
    for _, item in found:
        probe.add(
            item["severity"],
            item["code"],
            item["title"],
            detail=item["detail"],
            hint=item["hint"],
            object=item["object"],
            **item["data"],
        )


def _replication(probe: Probe) -> None:
    t = probe.t
    section = probe.section("connections")
    rows = probe.query("replication", "connections", REPLICATION)
    if rows:
        info = rows[0]
        lag = info["lag_seconds"]
        section["replication"] = {
            "in_recovery": info["in_recovery"],
            "lag_seconds": lag,
            "replicas": info["replicas"],
        }
        if lag is not None and lag >= t["replication_lag_seconds"]:
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
    slots = probe.query("replication_slots", "connections", SLOTS)
    if slots is None:
        return
    section["replication_slots"] = len(slots)
    inactive = [s for s in slots if not s["active"]]
    section["inactive_replication_slots"] = len(inactive)
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
