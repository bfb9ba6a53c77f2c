"""Server settings that matter for a Django site, and the server facts other sections use."""

from __future__ import annotations

from typing import Any

from django_dbtuning.report.humanize import human_bytes
from django_dbtuning.report.probe import Probe

SERVER = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_database() AS database, current_user AS "user",
       pg_is_in_recovery() AS in_recovery, now() AS now,
       pg_postmaster_start_time() AS started,
       (SELECT stats_reset FROM pg_stat_database
         WHERE datname = current_database()) AS stats_reset,
       pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor,
       pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS read_all_stats,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       inet_server_port() AS port
"""

IDENTITY = (
    "SELECT system_identifier::text AS system_identifier FROM pg_control_system()"
)

# fmt: off
IMPORTANT = (
    "max_connections", "superuser_reserved_connections", "reserved_connections",
    "shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
    "random_page_cost", "effective_io_concurrency", "io_method", "jit",
    "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
    "idle_session_timeout", "log_min_duration_statement", "track_io_timing",
    "track_activity_query_size", "autovacuum", "autovacuum_max_workers",
    "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor",
    "autovacuum_analyze_threshold", "autovacuum_analyze_scale_factor",
    "autovacuum_freeze_max_age", "shared_preload_libraries", "pg_stat_statements.max",
    "pg_stat_statements.track", "compute_query_id", "default_transaction_isolation",
    "block_size",
)
# fmt: on

SETTINGS = """
SELECT name, setting, reset_val, unit, source, boot_val, vartype
  FROM pg_settings WHERE name = ANY(%s)
"""


def _as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _pretty(row: dict[str, Any], value: str | None) -> str:
    """A pg_settings value with its unit applied (8kB pages, ms...)."""
    unit = row.get("unit")
    number = _as_number(value)
    if number is None or not unit:
        return value or ""
    if unit.endswith("B"):
        factor = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1024**2, "16MB": 16 * 1024**2}
        return human_bytes(number * factor.get(unit, 1))
    if unit in ("ms", "s", "min"):
        return "off" if number <= 0 else f"{value}{unit}"
    return f"{value} {unit}"


def server_info(probe: Probe) -> bool:
    """Fill ``probe.server``; False when even this failed (nothing else will work)."""
    rows = probe.query("server", "server", SERVER)
    if not rows:
        return False
    info = rows[0]
    server = probe.server
    server.update(info)
    server["version_num"] = info["version_num"]
    started = info["started"]
    reset = info["stats_reset"]
    since = reset or started
    server["stats_since"] = since.isoformat() if since else None
    server["stats_age_seconds"] = (
        (info["now"] - since).total_seconds() if since is not None else None
    )
    server["started"] = started.isoformat() if started else None
    server["stats_reset"] = reset.isoformat() if reset else None
    identity = probe.query("system_identifier", "server", IDENTITY)
    server["system_identifier"] = identity[0]["system_identifier"] if identity else None
    rows = probe.query("settings", "server", SETTINGS, [list(IMPORTANT)])
    values = {r["name"]: r for r in rows or []}
    server["_settings"] = values
    server["max_connections"] = int(
        _as_number(values.get("max_connections", {}).get("setting")) or 100
    )
    server["reserved_connections"] = int(
        (
            _as_number(values.get("superuser_reserved_connections", {}).get("setting"))
            or 0
        )
        + (_as_number(values.get("reserved_connections", {}).get("setting")) or 0)
    )
    server["shared_buffers"] = (
        _pretty(values["shared_buffers"], values["shared_buffers"]["setting"])
        if "shared_buffers" in values
        else None
    )
    server["autovacuum"] = {
        name: _as_number(values[name]["setting"])
        for name in (
            "autovacuum_vacuum_threshold",
            "autovacuum_vacuum_scale_factor",
            "autovacuum_analyze_threshold",
            "autovacuum_analyze_scale_factor",
        )
        if name in values
    }
    if not (info["pg_monitor"] or info["read_all_stats"] or info["superuser"]):
        probe.note(
            f"role {info['user']} is not a member of pg_monitor: other roles' sessions "
            f"and query texts are hidden ({probe.grant_pg_monitor()})"
        )
    probe.probe_columns(
        "pg_catalog.pg_stat_all_indexes",
        "pg_catalog.pg_stat_user_tables",
        "pg_catalog.pg_stat_activity",
    )
    return True


def collect(probe: Probe) -> None:
    values: dict[str, dict[str, Any]] = probe.server.get("_settings") or {}
    section = probe.section("settings")
    section.update(
        {
            name: {
                # reset_val: the session's value at connection time, i.e. what the app's
                # own connections get from the alias' OPTIONS, not this report's SET LOCAL.
                "value": _pretty(row, row["reset_val"]),
                "raw": row["reset_val"],
                "unit": row["unit"],
                "source": row["source"],
                "default": row["boot_val"] == row["reset_val"],
            }
            for name, row in sorted(values.items())
        }
    )
    if not values:
        return

    def raw(name: str) -> float | None:
        row = values.get(name)
        return _as_number(row["reset_val"]) if row else None

    if raw("statement_timeout") == 0:
        probe.add(
            "info",
            "no_statement_timeout",
            "No statement_timeout for this alias",
            detail=(
                "Connections of this alias run with statement_timeout = 0: a runaway "
                "query keeps its worker and its connection busy until it finishes, and "
                "under load the pool empties."
            ),
            hint=(
                "database(url, statement_timeout='5s') (or OPTIONS['options'] = "
                "'-c statement_timeout=5000'); give reporting code its own alias with a "
                "longer timeout"
            ),
            object="setting:statement_timeout",
        )
    if raw("idle_in_transaction_session_timeout") == 0:
        probe.add(
            "info",
            "no_idle_in_transaction_timeout",
            "No idle_in_transaction_session_timeout",
            detail=(
                "A transaction left open by a crashed worker or a slow HTTP call inside "
                "atomic() holds its locks and blocks VACUUM indefinitely."
            ),
            hint="database(url, idle_in_transaction_session_timeout='30s')",
            object="setting:idle_in_transaction_session_timeout",
        )
    shared = values.get("shared_buffers")
    if shared is not None and shared["reset_val"] == shared["boot_val"]:
        probe.add(
            "info",
            "default_shared_buffers",
            f"shared_buffers is the default {_pretty(shared, shared['reset_val'])}",
            detail=(
                "PostgreSQL ships with a tiny shared_buffers so that it starts anywhere; "
                "a dedicated database server should use about 25% of its RAM."
            ),
            hint="ALTER SYSTEM SET shared_buffers = '<25% of RAM>'; then restart",
            object="setting:shared_buffers",
        )
    if raw("random_page_cost") == 4:
        probe.add(
            "info",
            "random_page_cost_default",
            "random_page_cost is 4 (tuned for spinning disks)",
            detail=(
                "On SSDs and cloud volumes random reads cost little more than sequential "
                "ones; with 4 the planner prefers sequential scans over index scans more "
                "often than it should."
            ),
            hint="ALTER SYSTEM SET random_page_cost = 1.1; SELECT pg_reload_conf();",
            object="setting:random_page_cost",
        )
