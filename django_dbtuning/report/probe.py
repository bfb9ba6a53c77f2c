"""A read-only, time-boxed connection for the report's queries.

The report never borrows Django's connection (it may be inside a request's transaction, or
a pooled one): it opens its own psycopg connection from the alias' settings, marks every
transaction READ ONLY, and runs each query in its own transaction with ``SET LOCAL``
``statement_timeout`` and ``lock_timeout``, so one slow or locked catalog read degrades
one check instead of the whole report.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from django_dbtuning.pool import connection_kwargs as pool_connection_kwargs
from django_dbtuning.report.djangomap import ModelMap
from django_dbtuning.report.findings import (
    CheckOutcome,
    CheckStatus,
    DatabaseReport,
    Finding,
    Severity,
)
from django_dbtuning.report.quoting import ident
from django_dbtuning.report.timeouts import ReportTimeouts, show

logger = logging.getLogger(__name__)

# A comment on every report query: pg_stat_statements keeps it, so the statements section
# can leave the report's own queries out.
MARKER = "/* dbtuning:dbreport */"
APPLICATION_NAME = "dbtuning-dbreport"
Row = dict[str, Any]
Facts = TypeVar("Facts")


class Unreachable(Exception):
    """The alias' server could not be reached; the message is one safe line."""


def connection_kwargs(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """psycopg.connect() keywords for an alias, labelled as the report's connection."""
    return pool_connection_kwargs(settings_dict, application_name=APPLICATION_NAME)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 2:
            text = text.replace(secret, "***")
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.IGNORECASE)


def secrets(settings_dict: Mapping[str, Any]) -> list[str]:
    """An alias' secrets, for :func:`redact`: its password and OPTIONS' passwords."""
    options = settings_dict.get("OPTIONS") or {}
    return [
        str(settings_dict.get("PASSWORD") or ""),
        *(str(options.get(name) or "") for name in ("password", "sslpassword")),
    ]


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def connect(
    settings_dict: Mapping[str, Any], *, autocommit: bool = True
) -> psycopg.Connection[Row]:
    """Open the report's connection for one alias, or raise :class:`Unreachable`."""
    kwargs = connection_kwargs(settings_dict)
    try:
        conn = psycopg.connect(
            **kwargs,
            autocommit=autocommit,
            row_factory=dict_row,
            prepare_threshold=None,
        )
    except psycopg.Error as exc:
        where = f"{kwargs.get('host') or 'localhost'}:{kwargs.get('port') or 5432}"
        # The whole line: a host or database name may hold the password too (a
        # password equal to the database's name is one: its name then says it).
        raise Unreachable(
            redact(
                f"cannot connect to {where}/{kwargs.get('dbname', '')}: "
                f"{first_line(exc)}",
                secrets(settings_dict),
            )
        ) from None
    return conn


class Probe:
    """Runs one alias' checks: each query read-only, time-boxed, failures recorded."""

    def __init__(
        self,
        alias: str,
        conn: psycopg.Connection[Row],
        *,
        result: DatabaseReport,
        findings: list[Finding],
        thresholds: Mapping[str, float],
        models: ModelMap,
        top: int,
        timeouts: ReportTimeouts,
        show_sql_values: bool = False,
        explain: int = 0,
    ) -> None:
        self.alias = alias
        self.conn = conn
        self.result = result
        self.findings = findings
        self.t = thresholds
        self.models = models
        self.top = top
        # Top statements to plan with EXPLAIN (GENERIC_PLAN) (dbreport --explain); 0: none.
        self.explain = explain
        # Whole milliseconds (1 to INT_MAX), never the user's text: PostgreSQL would round
        # "0.4ms" to 0, which turns the timeout off.
        self.timeouts = timeouts
        self.statement_timeout = show(timeouts.statement_ms)
        self.lock_timeout = show(timeouts.lock_ms)
        self.show_sql_values = show_sql_values
        self.columns: dict[str, set[str]] = {}
        self.server = result.server
        # Every transaction of this session is read-only, whatever a check does.
        conn.read_only = True

    # -- queries -----------------------------------------------------------------------

    def query(
        self,
        check: str,
        section: str,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        extra: Sequence[tuple[str, Sequence[Any] | Mapping[str, Any]]] = (),
    ) -> list[Row] | None:
        """Run ``sql`` (and the ``extra`` queries after it) as one time-boxed check.

        Returns the rows of ``sql``, or None when the check failed; the failure is recorded
        as the check's status (permission, missing extension, timeout, error).
        """
        rows = self.queries(check, section, [(sql, params), *extra])
        return rows[0] if rows is not None else None

    def queries(
        self,
        check: str,
        section: str,
        statements: Sequence[tuple[str, Sequence[Any] | Mapping[str, Any]]],
    ) -> list[list[Row]] | None:
        record = CheckOutcome(name=check, section=section)
        self.result.checks.append(record)
        started = time.perf_counter()
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.execute(
                    f"{MARKER} SELECT set_config('statement_timeout', %s, true),"
                    " set_config('lock_timeout', %s, true)",
                    [
                        f"{self.timeouts.statement_ms}ms",
                        f"{self.timeouts.lock_ms}ms",
                    ],
                )
                results: list[list[Row]] = []
                for sql, params in statements:
                    cur.execute(f"{MARKER} {sql}", params or None)
                    results.append(cur.fetchall() if cur.description else [])
            return results
        except (errors.QueryCanceled, errors.LockNotAvailable) as exc:
            record.status = "timeout"
            record.reason = (
                f"lock_timeout {self.lock_timeout} (a relation is locked, e.g. by a "
                "migration)"
                if isinstance(exc, errors.LockNotAvailable)
                else f"statement_timeout {self.statement_timeout}"
            )
        except errors.InsufficientPrivilege as exc:
            record.status = "skipped"
            record.reason = (
                f"permission denied ({first_line(exc)}): {self.grant_pg_monitor()}"
            )
            record.fix = (
                f"{self.grant_pg_monitor()}, or grant SELECT on the relation it names"
            )
        except (
            errors.UndefinedTable,
            errors.UndefinedFunction,
            errors.UndefinedColumn,
            errors.ObjectNotInPrerequisiteState,
            errors.FeatureNotSupported,
        ) as exc:
            record.status = "skipped"
            record.reason = first_line(exc)
        except psycopg.Error as exc:
            record.status = "error"
            record.reason = f"{type(exc).__name__}: {first_line(exc)}"
        finally:
            record.duration = time.perf_counter() - started
        logger.info(
            "dbreport %s: check %s %s (%s)",
            self.alias,
            check,
            record.status,
            record.reason,
        )
        return None

    def query_or_estimate(
        self, check: str, section: str, sql: str, estimate: str, note: str
    ) -> list[Row] | None:
        """``sql``; when its check fails, ``estimate`` (check ``<check>_estimated``),
        which reads only what the catalogs hold without waiting for a lock."""
        rows = self.query(check, section, sql)
        if rows is None:
            rows = self.query(f"{check}_estimated", section, estimate)
            if rows is not None:
                self.note(note)
        return rows

    def probe_columns(
        self, *relations: str, check: str = "catalog_columns", section: str = "server"
    ) -> None:
        """Remember which columns the catalog views have (they vary by version).

        ``relations`` are regclass input: quote each name part (``quoting.ident``).
        """
        rows = self.query(
            check,
            section,
            "SELECT c.relname, array_agg(a.attname::text) AS columns"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE a.attrelid = ANY(%s::regclass[]) AND a.attnum > 0"
            " AND NOT a.attisdropped GROUP BY c.relname",
            [list(relations)],
        )
        for row in rows or []:
            self.columns[row["relname"]] = set(row["columns"])

    def has_column(self, relation: str, column: str) -> bool:
        return column in self.columns.get(relation, set())

    def optional_column(
        self, relation: str, column: str, cast: str, prefix: str = ""
    ) -> str:
        """``column`` where this server's ``relation`` has it, else a typed NULL."""
        return (
            f"{prefix}{column}"
            if self.has_column(relation, column)
            else f"NULL::{cast}"
        )

    def gap(
        self,
        check: str,
        section: str,
        status: CheckStatus,
        reason: str,
        *,
        expected: bool = False,
        cause: str | None = None,
        fix: str = "",
    ) -> CheckOutcome:
        """Record a check that could not run, or ran in part, without a query failing
        (an absent extension, rows hidden by privileges, a failed check it needs)."""
        record = CheckOutcome(
            name=check,
            section=section,
            status=status,
            reason=reason,
            expected=expected,
            cause=cause,
            fix=fix,
        )
        self.result.checks.append(record)
        return record

    def grant_pg_monitor(self) -> str:
        """The statement that lets this report's role see every session and statement."""
        user = self.server.get("user")
        return f"GRANT pg_monitor TO {ident(user) if user else '<this role>'}"

    # -- findings ----------------------------------------------------------------------

    def add(
        self,
        severity: Severity,
        code: str,
        title: str,
        *,
        detail: str,
        hint: str,
        object: str,
        model: str | None = None,
        **data: Any,
    ) -> Finding:
        finding = Finding(
            database=self.alias,
            severity=severity,
            code=code,
            title=title,
            detail=detail,
            hint=hint,
            object=object,
            model=model,
            data=data,
        )
        self.findings.append(finding)
        return finding

    def judge(
        self, checks: Mapping[str, Callable[[Probe, Facts], None]], facts: Facts
    ) -> dict[str, list[Finding]]:
        """Run each finding code's function of a section on its ``facts``; the findings
        each one added, by code (the section's counts)."""
        found: dict[str, list[Finding]] = {}
        for code, check in checks.items():
            start = len(self.findings)
            check(self, facts)
            found[code] = self.findings[start:]
        return found

    def section(self, name: str) -> dict[str, Any]:
        return self.result.sections.setdefault(name, {})

    def note(self, text: str) -> None:
        if text not in self.result.notes:
            self.result.notes.append(text)


Collector = Callable[[Probe], None]
