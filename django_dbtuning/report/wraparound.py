"""Transaction-ID and multixact wraparound, per table (TOAST included) and per database.

PostgreSQL forces an anti-wraparound autovacuum on a table once the age of its
``relfrozenxid`` (or ``mxid_age(relminmxid)``) passes ``autovacuum_freeze_max_age``
(``autovacuum_multixact_freeze_max_age``), or the table's own, lower, reloption; it stops
accepting writes near 2^31. A table's age is the greater of its heap's and its TOAST
table's, each judged against its own limit. PgHero calls these ``autovacuum_danger`` and
``transaction_id_danger``.

Each table gets at most one finding: ``xid_wraparound`` when it is near the hard limit,
else ``wraparound_vacuum_due`` when a forced vacuum is near or overdue. The database's
own ``age(datfrozenxid)`` becomes an ``xid_wraparound`` finding only when no table
explains it (or the per-table check could not run), so one problem is never reported
twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django_dbtuning.report.probe import Probe, Row
from django_dbtuning.report.quoting import ident, qualified

if TYPE_CHECKING:
    from django_dbtuning.report.table_facts import TableFacts

WRAPAROUND_LIMIT = 2**31
"""Transaction IDs (and multixact IDs) a database can have in use before wraparound."""

TABLE_AGES = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS "table",
       c.relpersistence::text AS persistence,
       age(c.relfrozenxid)::bigint AS heap_xid_age,
       mxid_age(c.relminmxid)::bigint AS heap_mxid_age,
       CASE WHEN t.oid IS NOT NULL THEN age(t.relfrozenxid)::bigint END AS toast_xid_age,
       CASE WHEN t.oid IS NOT NULL THEN mxid_age(t.relminmxid)::bigint END AS toast_mxid_age,
       c.reloptions, t.reloptions AS toast_reloptions,
       (SELECT age(datfrozenxid)::bigint FROM pg_database
         WHERE datname = current_database()) AS database_xid_age
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relkind IN ('r', 'm')
"""

# What keeps VACUUM from freezing: the oldest snapshot a session, a replication slot or a
# prepared transaction still holds (NULL when there is none).
HORIZON = """
SELECT current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
       current_setting('autovacuum_multixact_freeze_max_age')::bigint
         AS multixact_freeze_max_age,
       (SELECT max(age(backend_xmin)) FROM pg_stat_activity) AS session_xmin_age,
       (SELECT max(greatest(age(xmin), age(catalog_xmin))) FROM pg_replication_slots)
         AS slot_xmin_age,
       (SELECT max(age(transaction)) FROM pg_prepared_xacts) AS prepared_xact_age
"""


def _reloption(options: list[str] | None, name: str) -> int | None:
    for item in options or []:
        key, _, value = item.partition("=")
        if key == name and value.isdigit():
            return int(value)
    return None


def _limit(server_value: int, options: list[str] | None, name: str) -> int:
    # A per-table value above the server's is ignored by autovacuum: only lower counts.
    own = _reloption(options, name)
    return min(server_value, own) if own else server_value


@dataclass(frozen=True)
class TableAge:
    """One table's wraparound position: its worst age and how it compares."""

    row: Row
    xid_age: int
    """The greater of the heap's and the TOAST table's transaction-ID age."""
    mxid_age: int
    freeze_share: float
    """Worst of the four ages over its forced-vacuum limit (1.0 = a forced vacuum is due)."""
    freeze_limit: int
    """The limit behind ``freeze_share``."""
    freeze_age: int
    """The age behind ``freeze_share``."""
    limited_by: str
    """What ``freeze_share`` measures: "transaction ID" or "multixact", with "(TOAST)"."""

    @property
    def worst_age(self) -> int:
        return max(self.xid_age, self.mxid_age)

    @property
    def limit_share(self) -> float:
        """Share of the 2^31 hard limit used (transaction IDs or multixacts)."""
        return self.worst_age / WRAPAROUND_LIMIT

    @property
    def name(self) -> str:
        return qualified(self.row["schema"], self.row["table"])

    @property
    def sql_name(self) -> str:
        return ident(self.row["schema"], self.row["table"])

    def as_dict(self, probe: Probe) -> dict[str, Any]:
        return {
            "table": self.name,
            "model": probe.models.label(self.row["table"], self.row["schema"]),
            **self.numbers(),
        }

    def numbers(self) -> dict[str, Any]:
        """The ages and shares behind a finding (its ``data``)."""
        return {
            "xid_age": self.xid_age,
            "mxid_age": self.mxid_age,
            "freeze_limit": self.freeze_limit,
            "freeze_share": self.freeze_share,
            "limit_share": self.limit_share,
        }


@dataclass
class Wraparound:
    tables: list[TableAge]
    """Every table, the closest to a forced vacuum first."""
    horizon: Row
    database_xid_age: int | None = None
    """``age(datfrozenxid)`` read in the same statement as the tables' ages: read
    apart, a transaction ID spent in between makes the database look younger than its
    oldest table."""


def table_age(row: Row, horizon: Row) -> TableAge:
    """Where ``row`` (a TABLE_AGES row) stands against its limits."""
    xid_limit = horizon["freeze_max_age"]
    mxid_limit = horizon["multixact_freeze_max_age"]
    candidates = []
    for part, options in (
        ("", row["reloptions"]),
        (" (TOAST)", row["toast_reloptions"]),
    ):
        prefix = "toast" if part else "heap"
        for kind, column, server, option in (
            ("transaction ID", "xid_age", xid_limit, "autovacuum_freeze_max_age"),
            (
                "multixact",
                "mxid_age",
                mxid_limit,
                "autovacuum_multixact_freeze_max_age",
            ),
        ):
            age = row[f"{prefix}_{column}"]
            if age is None:
                continue
            limit = max(1, _limit(server, options, option))
            candidates.append((age / limit, limit, kind + part, age))
    share, limit, what, worst = max(candidates, key=lambda c: c[0])  # ties: the heap
    return TableAge(
        row=row,
        xid_age=max(row["heap_xid_age"], row["toast_xid_age"] or 0),
        mxid_age=max(row["heap_mxid_age"], row["toast_mxid_age"] or 0),
        freeze_share=share,
        freeze_limit=limit,
        freeze_age=worst,
        limited_by=what,
    )


def gather(probe: Probe) -> Wraparound | None:
    """Every table's ages against its limits; None when the check could not run."""
    results = probe.queries(
        "table_wraparound", "tables", [(TABLE_AGES, ()), (HORIZON, ())]
    )
    if results is None:
        return None
    rows, (horizon,) = results
    ages = [table_age(row, horizon) for row in rows]
    ages.sort(key=lambda a: (a.freeze_share, a.worst_age), reverse=True)
    database_age = rows[0]["database_xid_age"] if rows else None
    return Wraparound(tables=ages, horizon=horizon, database_xid_age=database_age)


def near_limit(probe: Probe, age: TableAge) -> bool:
    return age.worst_age >= probe.t["xid_age_warning"]


def holders(horizon: Row) -> str:
    """What holds the xmin horizon back right now, in words (or the usual suspects)."""
    found = [
        f"{label} {horizon[key]:,} transactions old"
        for key, label in (
            ("session_xmin_age", "a session's snapshot is"),
            ("slot_xmin_age", "a replication slot's xmin is"),
            ("prepared_xact_age", "a prepared transaction is"),
        )
        if (horizon.get(key) or 0) >= 1_000_000
    ]
    if found:
        return (
            "; ".join(found)
            + ": end it (pg_terminate_backend, pg_drop_replication_slot, "
            "ROLLBACK PREPARED) or VACUUM cannot freeze past it"
        )
    return (
        "check that no long transaction, abandoned replication slot or prepared "
        "transaction holds the xmin horizon back (pg_stat_activity.backend_xmin, "
        "pg_replication_slots, pg_prepared_xacts)"
    )


def _temp(age: TableAge) -> str:
    if age.row["persistence"] != "t":
        return ""
    return (
        " It is a temporary table: only its own session can vacuum it, autovacuum never "
        "does; end that session."
    )


def _share(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 else f"{share:.3%}"


def _vacuum(age: TableAge) -> str:
    return f"VACUUM (FREEZE, VERBOSE) {age.sql_name}"


def xid_wraparound(probe: Probe, facts: TableFacts) -> None:
    """Tables near the 2^31 hard limit; the database's own age when no table explains it
    (or the per-table check could not run)."""
    t = probe.t
    wrap = facts.wraparound
    reported = False
    for age in wrap.tables if wrap is not None else []:
        if not near_limit(probe, age):
            continue
        reported = True
        vacuum = _vacuum(age)
        kind = "Multixact" if age.mxid_age > age.xid_age else "Transaction ID"
        probe.add(
            "error" if age.worst_age >= t["xid_age_error"] else "warning",
            "xid_wraparound",
            f"{kind} age {age.worst_age:,} on {age.name}",
            detail=(
                f"{age.name} (with its TOAST table) holds {kind.lower()}s "
                f"{age.worst_age:,} old, {_share(age.limit_share)} of the "
                f"{WRAPAROUND_LIMIT:,} limit ({WRAPAROUND_LIMIT - age.worst_age:,} "
                "left): near it PostgreSQL stops accepting writes in the whole "
                f"database to prevent wraparound.{_temp(age)}"
            ),
            hint=f"{vacuum}; {holders(wrap.horizon)}" if wrap else vacuum,
            object=age.name,
            model=probe.models.label(age.row["table"], age.row["schema"]),
            sql=[vacuum],
            **age.numbers(),
        )
    database = facts.database
    db_age = (database or {}).get("xid_age") or 0
    if database is None or reported or db_age < t["xid_age_warning"]:
        return
    name = probe.server.get("database")
    why = (
        "no table is that old any more: the next VACUUM of any table advances "
        "datfrozenxid"
        if wrap is not None
        else "find the tables with the oldest relfrozenxid and VACUUM (FREEZE) them"
    )
    probe.add(
        "error" if db_age >= t["xid_age_error"] else "warning",
        "xid_wraparound",
        f"Transaction ID age {db_age:,}",
        detail=(
            f"The oldest unfrozen transaction ID in {name} is {db_age:,} transactions "
            f"old ({_share(db_age / WRAPAROUND_LIMIT)} of the {WRAPAROUND_LIMIT:,} limit); "
            "near it PostgreSQL stops accepting writes to prevent wraparound."
        ),
        hint=f"{why}; {holders(wrap.horizon) if wrap else holders({})}",
        object=f"database:{name}",
        xid_age=db_age,
        limit_share=db_age / WRAPAROUND_LIMIT,
    )


def wraparound_vacuum_due(probe: Probe, facts: TableFacts) -> None:
    """Tables at or past their forced (anti-wraparound) autovacuum limit."""
    t = probe.t
    wrap = facts.wraparound
    if wrap is None:
        return
    for age in wrap.tables:
        if age.freeze_share < t["freeze_age_info_ratio"]:
            break  # sorted: the rest are further from it
        if near_limit(probe, age):
            continue  # xid_wraparound reports it
        overdue = age.freeze_share >= t["freeze_age_warning_ratio"]
        vacuum = _vacuum(age)
        state = (
            "is past it: the forced vacuum is overdue (still running on a large table, "
            "blocked, or failing)"
            if overdue
            else "a forced autovacuum will run on it soon (or runs now); it cannot be "
            "cancelled and makes DDL on the table (a migration) wait for it"
        )
        setting = (
            "autovacuum_multixact_freeze_max_age"
            if age.limited_by.startswith("multixact")
            else "autovacuum_freeze_max_age"
        )
        probe.add(
            "warning" if overdue else "info",
            "wraparound_vacuum_due",
            f"{age.name} is {_share(age.freeze_share)} of the way to a forced vacuum",
            detail=(
                f"The oldest unfrozen {age.limited_by} of {age.name} is "
                f"{age.freeze_age:,} old: {_share(age.freeze_share)} of "
                f"{age.freeze_limit:,} ({setting}), the age at which autovacuum forces "
                f"an anti-wraparound vacuum on it; {state}.{_temp(age)}"
            ),
            hint=(
                f"{vacuum} off-peak, so the freeze happens when you choose; "
                f"{holders(wrap.horizon)}"
            ),
            object=age.name,
            model=probe.models.label(age.row["table"], age.row["schema"]),
            sql=[vacuum],
            **age.numbers(),
        )


def summary(probe: Probe, wrap: Wraparound) -> dict[str, Any]:
    """The section's numbers: the limits and the tables closest to them."""
    horizon = wrap.horizon
    return {
        "freeze_max_age": horizon["freeze_max_age"],
        "multixact_freeze_max_age": horizon["multixact_freeze_max_age"],
        "table_xid_age_max": max((a.xid_age for a in wrap.tables), default=0),
        "table_mxid_age_max": max((a.mxid_age for a in wrap.tables), default=0),
        "closest": [a.as_dict(probe) for a in wrap.tables[: probe.top or None]],
    }
