"""PgBouncer's admin console: SHOW POOLS / SHOW STATS / SHOW DATABASES for an alias whose
NAME is ``pgbouncer`` (the virtual admin database).

The console speaks only the simple query protocol and accepts no transactions or SET, so
this path uses an autocommit connection with client-side binding and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from django_dbtuning.report.findings import (
    CheckOutcome,
    DatabaseReport,
    Finding,
    mark_unreachable,
)
from django_dbtuning.report.probe import Unreachable, connect, first_line


def is_admin_console(settings_dict: Mapping[str, Any]) -> bool:
    return settings_dict.get("NAME") == "pgbouncer"


def collect(
    alias: str,
    settings_dict: Mapping[str, Any],
    result: DatabaseReport,
    findings: list[Finding],
    limits: Mapping[str, float],
) -> None:
    # The console rejects startup options such as -c statement_timeout.
    options = {
        k: v for k, v in (settings_dict.get("OPTIONS") or {}).items() if k != "options"
    }
    try:
        conn = connect({**settings_dict, "OPTIONS": options})
    except Unreachable as exc:
        mark_unreachable(
            result,
            findings,
            alias,
            exc,
            what="PgBouncer admin console",
            hint="check the alias and that its user is in admin_users or stats_users",
        )
        return
    section: dict[str, Any] = {}
    result.sections["pgbouncer"] = section
    with conn:
        cursor = psycopg.ClientCursor(conn)
        for command in ("POOLS", "STATS", "DATABASES"):
            check = CheckOutcome(name=f"show_{command.lower()}", section="pgbouncer")
            result.checks.append(check)
            try:
                cursor.execute(f"SHOW {command}")
                section[command.lower()] = [dict(row) for row in cursor.fetchall()]
            except psycopg.Error as exc:
                # A gap like any other: check_incomplete, --fail-on fails on it.
                section[command.lower()] = None
                check.status = "error"
                check.reason = f"SHOW {command} failed: {first_line(exc)}"
    for pool in section.get("pools") or []:
        waiting = int(pool.get("cl_waiting") or 0)
        maxwait = (
            float(pool.get("maxwait") or 0) + float(pool.get("maxwait_us") or 0) / 1e6
        )
        if waiting and maxwait >= 1:
            findings.append(
                Finding(
                    database=alias,
                    severity="warning",
                    code="pgbouncer_clients_waiting",
                    title=(
                        f"PgBouncer: {waiting} clients waiting on {pool.get('database')}/"
                        f"{pool.get('user')}"
                    ),
                    detail=(
                        f"{waiting} clients are queued for a server connection, the "
                        f"oldest for {maxwait:.1f} s ({pool.get('sv_active')} server "
                        f"connections active, {pool.get('sv_idle')} idle; pool_mode "
                        f"{pool.get('pool_mode')})."
                    ),
                    hint=(
                        "raise default_pool_size for this database in pgbouncer.ini (within "
                        "max_connections) or find the transactions that hold server "
                        "connections (dbreport --section connections on the database alias)"
                    ),
                    object=f"pgbouncer:{pool.get('database')}/{pool.get('user')}",
                    data={"clients_waiting": waiting, "maxwait_seconds": maxwait},
                )
            )
