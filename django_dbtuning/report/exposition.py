"""Prometheus exposition of the report: ``dbtuning_`` metrics, an ``alias`` label, low
cardinality by default (aggregates per alias; per-index series only when asked).

The same families feed ``dbreport --format prometheus`` (e.g. into node_exporter's textfile
directory, no timestamps) and the live collector in :mod:`django_dbtuning.report.live`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django_dbtuning.conf import get_settings
from django_dbtuning.report.findings import SEVERITIES, DatabaseReport, Report
from django_dbtuning.validation import number_or_none

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
    )

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - the prometheus extra is not installed
    HAVE_PROMETHEUS = False

# fmt: off
# psycopg_pool get_stats() key -> (metric name, help).
POOL_GAUGES: dict[str, tuple[str, str]] = {
    "pool_min": ("dbtuning_pool_min_connections", "The pool's min_size."),
    "pool_max": ("dbtuning_pool_max_connections", "The pool's max_size."),
    "pool_size": ("dbtuning_pool_open_connections",
                  "Connections the pool manages: idle, lent out and being opened."),
    "pool_available": ("dbtuning_pool_idle_connections", "Idle connections in the pool."),
    "requests_waiting": ("dbtuning_pool_waiting_requests",
                         "Requests queued for a connection right now."),
}
# psycopg_pool get_stats() key -> (metric name, help, scale to base units).
POOL_COUNTERS: dict[str, tuple[str, str, float]] = {
    "requests_num": ("dbtuning_pool_requests", "Connections requested from the pool.", 1),
    "requests_queued": ("dbtuning_pool_requests_queued",
                        "Requests that had to wait for a connection.", 1),
    "requests_wait_ms": ("dbtuning_pool_request_wait_seconds",
                         "Time requests spent waiting for a connection.", 0.001),
    "requests_errors": ("dbtuning_pool_request_errors",
                        "Requests that failed (timeout, queue full).", 1),
    "usage_ms": ("dbtuning_pool_usage_seconds", "Time connections spent lent out.", 0.001),
    "connections_num": ("dbtuning_pool_connections", "Physical connection attempts.", 1),
    "connections_ms": ("dbtuning_pool_connect_seconds",
                       "Time spent opening connections.", 0.001),
    "connections_errors": ("dbtuning_pool_connect_errors", "Failed connection attempts.", 1),
    "connections_lost": ("dbtuning_pool_connections_lost",
                         "Connections found broken by a check.", 1),
    "returns_bad": ("dbtuning_pool_bad_returns",
                    "Connections returned to the pool in a bad state.", 1),
}
# The report's gauges in exposition order: metric -> (help, labels besides alias).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dbtuning_up": ("1 when dbreport could connect to the alias' database.", ()),
    "dbtuning_report_duration_seconds": ("Time the report took for the alias.", ()),
    "dbtuning_check_success": ("1 when the report check ran fully.", ("check",)),
    "dbtuning_check_duration_seconds": ("Time one report check took.", ("check",)),
    "dbtuning_report_complete": ("1 when the alias was reached and every report check ran fully; 0 means a clean result proves nothing (see dbtuning_report_check_incomplete).", ()),
    "dbtuning_report_check_incomplete": ("1 for each report check that could not run or ran only in part (status: partial, skipped, timeout, error).", ("check", "section", "status")),
    "dbtuning_findings": ("Report findings by code and severity.", ("code", "severity")),
    "dbtuning_findings_worst_severity": ("Worst finding severity: 0 none, 1 info, 2 warning, 3 error.", ()),
    "dbtuning_server_max_connections": ("The server's max_connections.", ()),
    "dbtuning_connections_total": ("Client connections open on the server.", ()),
    "dbtuning_connections_usage_ratio": ("Open connections / (max_connections - reserved).", ()),
    "dbtuning_connections_waiting": ("Sessions waiting on a lock.", ()),
    "dbtuning_connections_blocked": ("Sessions blocked by another session.", ()),
    "dbtuning_longest_query_seconds": ("Age of the longest-running active query.", ()),
    "dbtuning_longest_transaction_seconds": ("Age of the oldest open transaction.", ()),
    "dbtuning_idle_in_transaction_max_seconds": ("Longest time a session has been idle in transaction.", ()),
    "dbtuning_replication_slots_inactive": ("Replication slots without a consumer.", ()),
    "dbtuning_indexes": ("Indexes in the database.", ()),
    "dbtuning_indexes_size_bytes": ("Size of all indexes.", ()),
    "dbtuning_unused_indexes": ("Non-unique indexes without scans since the statistics reset.", ()),
    "dbtuning_unused_indexes_size_bytes": ("Size of the unused indexes.", ()),
    "dbtuning_redundant_indexes": ("Indexes duplicated by or a prefix of another index.", ()),
    "dbtuning_invalid_indexes": ("Invalid indexes.", ()),
    "dbtuning_fk_without_index": ("Foreign keys no index starts with.", ()),
    "dbtuning_index_bloat_bytes": ("Estimated dead space in btree indexes.", ()),
    "dbtuning_tables": ("Tables in the database.", ()),
    "dbtuning_tables_size_bytes": ("Size of all tables.", ()),
    "dbtuning_database_size_bytes": ("pg_database_size of the database.", ()),
    "dbtuning_dead_tuples": ("Dead row versions in all tables.", ()),
    "dbtuning_live_tuples": ("Live rows in all tables.", ()),
    "dbtuning_seq_scan_heavy_tables": ("Large tables read mostly by sequential scans.", ()),
    "dbtuning_sequence_usage_max_ratio": ("Fullest sequence-fed column, as a share of its type's range.", ()),
    "dbtuning_xid_age": ("Age of the database's oldest unfrozen transaction ID.", ()),
    "dbtuning_freeze_age_max_ratio": ("Largest share of its forced anti-wraparound vacuum limit a table's (or its TOAST table's) oldest unfrozen transaction ID or multixact has used.", ()),
    "dbtuning_table_bloat_bytes": ("Dead rows and free space in the tables large enough to be checked.", ()),
    "dbtuning_statements_tracked": ("Statements pg_stat_statements tracks for this database.", ()),
    "dbtuning_statements_seconds": ("Execution (and planning) time of all tracked statements.", ()),
    "dbtuning_statements_calls": ("Calls of all tracked statements.", ()),
    "dbtuning_pool_deployment_max_connections": ("Connections the whole deployment opens at max_size (from the DBTUNING inputs).", ()),
    "dbtuning_pool_configured_max_size": ("The alias' configured pool max_size.", ()),
    "dbtuning_cache_hit_ratio": ("Share of block reads served from shared_buffers, since the stats reset.", ("kind",)),
    "dbtuning_connections": ("Client connections by state.", ("state",)),
    "dbtuning_pgbouncer_clients_active": ("PgBouncer: active clients.", ()),
    "dbtuning_pgbouncer_clients_waiting": ("PgBouncer: clients waiting for a server connection.", ()),
    "dbtuning_pgbouncer_servers_active": ("PgBouncer: server connections in use.", ()),
    "dbtuning_pgbouncer_servers_idle": ("PgBouncer: idle server connections.", ()),
    "dbtuning_pgbouncer_client_maxwait_seconds": ("PgBouncer: the longest current client wait.", ()),
    "dbtuning_replication_lag_seconds": ("On a replica: time since the last replayed transaction while WAL is pending.", ()),
}
# The gauges that show one number of a section: metric -> (section, key).
SECTION_GAUGES: dict[str, tuple[str, str]] = {
    "dbtuning_server_max_connections": ("connections", "max_connections"),
    "dbtuning_connections_total": ("connections", "total"),
    "dbtuning_connections_usage_ratio": ("connections", "usage_ratio"),
    "dbtuning_connections_waiting": ("connections", "waiting"),
    "dbtuning_connections_blocked": ("connections", "blocked"),
    "dbtuning_longest_query_seconds": ("connections", "longest_query_seconds"),
    "dbtuning_longest_transaction_seconds": ("connections", "longest_transaction_seconds"),
    "dbtuning_idle_in_transaction_max_seconds": ("connections", "idle_in_transaction_max_seconds"),
    "dbtuning_replication_slots_inactive": ("connections", "inactive_replication_slots"),
    "dbtuning_indexes": ("indexes", "count"),
    "dbtuning_indexes_size_bytes": ("indexes", "size_bytes"),
    "dbtuning_unused_indexes": ("indexes", "unused_count"),
    "dbtuning_unused_indexes_size_bytes": ("indexes", "unused_size_bytes"),
    "dbtuning_redundant_indexes": ("indexes", "duplicate_count"),
    "dbtuning_invalid_indexes": ("indexes", "invalid_count"),
    "dbtuning_fk_without_index": ("indexes", "fk_without_index_count"),
    "dbtuning_index_bloat_bytes": ("indexes", "bloat_bytes_estimate"),
    "dbtuning_tables": ("tables", "count"),
    "dbtuning_tables_size_bytes": ("tables", "size_bytes"),
    "dbtuning_database_size_bytes": ("tables", "database_size_bytes"),
    "dbtuning_dead_tuples": ("tables", "dead_tuples"),
    "dbtuning_live_tuples": ("tables", "live_tuples"),
    "dbtuning_seq_scan_heavy_tables": ("tables", "seq_scan_heavy"),
    "dbtuning_sequence_usage_max_ratio": ("tables", "sequence_usage_max_ratio"),
    "dbtuning_xid_age": ("tables", "database_xid_age"),
    "dbtuning_freeze_age_max_ratio": ("tables", "freeze_age_max_ratio"),
    "dbtuning_table_bloat_bytes": ("tables", "bloat_bytes_estimate"),
    "dbtuning_statements_tracked": ("statements", "tracked"),
    "dbtuning_statements_seconds": ("statements", "total_seconds"),
    "dbtuning_statements_calls": ("statements", "calls"),
    "dbtuning_pool_deployment_max_connections": ("pool", "deployment_max_connections"),
    "dbtuning_pool_configured_max_size": ("pool", "configured_max_size"),
}
# PgBouncer SHOW POOLS column -> metric, summed over the bouncer's pools.
BOUNCER_GAUGES = {
    "cl_active": "dbtuning_pgbouncer_clients_active",
    "cl_waiting": "dbtuning_pgbouncer_clients_waiting",
    "sv_active": "dbtuning_pgbouncer_servers_active",
    "sv_idle": "dbtuning_pgbouncer_servers_idle",
}
# fmt: on


def _require() -> None:
    if not HAVE_PROMETHEUS:  # pragma: no cover
        raise ImportError(
            "the Prometheus format needs prometheus_client: pip install "
            "'django-dbtuning[prometheus]'"
        )


def pool_families(
    stats_by_alias: Mapping[str, Mapping[str, Any] | None],
) -> Iterator[Metric]:
    """Families for psycopg_pool ``get_stats()`` dicts of this process, by alias."""
    _require()
    is_open = GaugeMetricFamily(
        "dbtuning_pool_open", "1 when this process' pool is open.", labels=["alias"]
    )
    gauges = {
        key: GaugeMetricFamily(name, doc, labels=["alias"])
        for key, (name, doc) in POOL_GAUGES.items()
    }
    in_use = GaugeMetricFamily(
        "dbtuning_pool_in_use_connections",
        "Connections lent out (or being opened).",
        labels=["alias"],
    )
    counters = {
        key: CounterMetricFamily(name, doc, labels=["alias"])
        for key, (name, doc, _) in POOL_COUNTERS.items()
    }
    any_pool = False
    for alias, stats in sorted(stats_by_alias.items()):
        if stats is None:
            continue
        any_pool = True
        is_open.add_metric([alias], 1 if stats.get("open") else 0)
        if not stats.get("open"):
            continue
        for key, family in gauges.items():
            family.add_metric([alias], float(stats.get(key, 0)))
        in_use.add_metric(
            [alias], float(stats.get("pool_size", 0) - stats.get("pool_available", 0))
        )
        for key, counter in counters.items():
            counter.add_metric(
                [alias], float(stats.get(key, 0)) * POOL_COUNTERS[key][2]
            )
    if any_pool:
        yield is_open
        yield from gauges.values()
        yield in_use
        yield from counters.values()


class _Families:
    """The report's families, in exposition order, filled one alias at a time."""

    def __init__(self, per_index: bool) -> None:
        self.gauges = {
            name: GaugeMetricFamily(name, doc, labels=["alias", *labels])
            for name, (doc, labels) in GAUGES.items()
        }
        self.out: list[Metric] = list(self.gauges.values())
        labels = ["alias", "schema", "table", "index"]
        self.index = (
            GaugeMetricFamily(
                "dbtuning_index_size_bytes", "Size of one index.", labels=labels
            ),
            CounterMetricFamily(
                "dbtuning_index_scans",
                "Scans of one index since the statistics reset.",
                labels=labels,
            ),
        )
        if per_index:
            self.out += self.index
        # One series per table for the N largest only, when asked: cardinality.
        self.table_size = GaugeMetricFamily(
            "dbtuning_table_size_bytes",
            "Size of one of the largest tables, its indexes and TOAST included "
            "(REPORT_TOP_TABLE_METRICS).",
            labels=["alias", "table"],
        )
        self.top_tables = get_settings().report_top_table_metrics
        if self.top_tables:
            self.out.append(self.table_size)
        self.per_index = per_index

    def add(self, name: str, labels: list[str], value: float) -> None:
        self.gauges[name].add_metric(labels, value)

    def add_findings(self, report: Report) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for finding in report.findings:
            triple = (finding.database, finding.code, finding.severity)
            counts[triple] = counts.get(triple, 0) + 1
        for (alias, code, severity), count in sorted(counts.items()):
            self.add("dbtuning_findings", [alias, code, severity], count)

    def add_database(self, alias: str, db: DatabaseReport, worst: int) -> None:
        self.add("dbtuning_up", [alias], 1 if db.reachable else 0)
        self.add("dbtuning_report_duration_seconds", [alias], db.duration)
        self.add("dbtuning_findings_worst_severity", [alias], worst)
        self.add("dbtuning_report_complete", [alias], 1 if db.complete else 0)
        for check in db.checks:
            labels = [alias, check.name]
            self.add("dbtuning_check_success", labels, 1 if check.complete else 0)
            self.add("dbtuning_check_duration_seconds", labels, check.duration)
            if not check.complete:
                self.add(
                    "dbtuning_report_check_incomplete",
                    [*labels, check.section, check.status],
                    1,
                )
        self.add_sections(alias, db)
        if db.kind == "pgbouncer" and db.reachable:
            self.add_bouncer(
                alias, (db.sections.get("pgbouncer") or {}).get("pools") or []
            )
        connections = db.sections.get("connections") or {}
        lag = (connections.get("replication") or {}).get("lag_seconds")
        if lag is not None:
            self.add("dbtuning_replication_lag_seconds", [alias], float(lag))
        for state, count in (connections.get("by_state") or {}).items():
            self.add("dbtuning_connections", [alias, state], count)
        self.add_top_tables(alias, db)
        if self.per_index:
            index_size, index_scans = self.index
            for row in db.objects.get("indexes", []):
                labels = [alias, row["schema"], row["table"], row["index"]]
                index_scans.add_metric(labels, float(row["scans"]))
                index_size.add_metric(labels, float(row["size_bytes"]))

    def add_top_tables(self, alias: str, db: DatabaseReport) -> None:
        """``REPORT_TOP_TABLE_METRICS`` tables by size (0, the default: none): the
        largest from the tables section, so never more than the report's ``top``."""
        largest = (db.sections.get("tables") or {}).get("largest") or []
        for row in largest[: self.top_tables] if self.top_tables else []:
            size = number_or_none(row.get("total_bytes") or row.get("size_bytes"))
            if size is not None:
                self.table_size.add_metric([alias, str(row["table"])], size)

    def add_sections(self, alias: str, db: DatabaseReport) -> None:
        pool = db.sections.get("pool") or {}
        configured = (pool.get("configuration") or {}).get("max_size")
        if configured is not None:
            pool = {**pool, "configured_max_size": configured}
        sections = {**db.sections, "pool": pool}
        for name, (section, key) in SECTION_GAUGES.items():
            value = number_or_none((sections.get(section) or {}).get(key))
            if value is not None:
                self.add(name, [alias], value)
        ratios = (db.sections.get("tables") or {}).get("cache_hit_ratio") or {}
        for kind, value in sorted(ratios.items()):
            if value is not None:
                self.add("dbtuning_cache_hit_ratio", [alias, kind], float(value))

    def add_bouncer(self, alias: str, pools: list[dict[str, Any]]) -> None:
        # Summed over the bouncer's pools: one series per alias, not per pool.
        for key, name in BOUNCER_GAUGES.items():
            self.add(name, [alias], float(sum(int(p.get(key) or 0) for p in pools)))
        self.add(
            "dbtuning_pgbouncer_client_maxwait_seconds",
            [alias],
            max(
                (
                    float(p.get("maxwait") or 0) + float(p.get("maxwait_us") or 0) / 1e6
                    for p in pools
                ),
                default=0.0,
            ),
        )


def families(
    report: Report, *, per_index: bool = False, pool: bool = True
) -> list[Metric]:
    _require()
    found = _Families(per_index)
    found.add_findings(report)
    rank = {name: rank + 1 for rank, name in enumerate(SEVERITIES)}
    for alias, db in report.databases.items():
        worst = max(
            (rank[f.severity] for f in report.findings if f.database == alias),
            default=0,
        )
        found.add_database(alias, db, worst)
    if pool:
        stats = {
            alias: (db.sections.get("pool") or {}).get("live")
            for alias, db in report.databases.items()
        }
        found.out.extend(pool_families(stats))
    return found.out


def as_prometheus(report: Report, *, per_index: bool = False) -> str:
    """The report in the Prometheus text exposition format."""
    _require()
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)

    class _Once:
        def collect(self) -> Iterable[Metric]:
            return families(report, per_index=per_index)

    registry.register(_Once())
    return generate_latest(registry).decode()
