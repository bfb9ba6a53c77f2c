"""``dbreport --save`` and ``--since``: where snapshots live, how long, and which one a
comparison starts from.

Snapshots are stored through the ORM on the database Django's routers pick for writing
:class:`~django_dbtuning.models.Snapshot` (``router.db_for_write``: the default alias
unless a router says otherwise), whichever alias they describe: one table holds every
alias' history, a replica or a read-only alias can be reported on and its snapshots still
saved, and a router moves them all elsewhere in one place. Each row names the alias it
describes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, overload

from django.core.checks import CheckMessage, Error, register
from django.db import DatabaseError, connections, router, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from django_dbtuning.conf import SETTINGS, get_settings
from django_dbtuning.exceptions import DbTuningError
from django_dbtuning.report.compare import Comparison, compare
from django_dbtuning.report.findings import Report
from django_dbtuning.report.probe import first_line, redact, secrets
from django_dbtuning.report.snapshot import (
    SnapshotData,
    SnapshotUnavailable,
    collect,
    from_document,
    to_document,
    with_findings,
)
from django_dbtuning.report.snapshot_schema import unreadable
from django_dbtuning.validation import millisecond_value

RETENTION = "HISTORY_RETENTION"
_UNIT = re.compile(r".*[0-9.]\s*(us|ms|s|min|h|d)\s*")
_USE_SINCE = (
    "use a duration such as '7d', '12h' or '30min', or an ISO date ('2026-11-23')"
)


class HistoryError(DbTuningError):
    """A snapshot could not be saved or compared; the message is one line that names
    the alias, the option or the setting."""

    __module__ = "django_dbtuning.report"


@dataclass
class SaveResult:
    """What ``--save`` did: the rows written, the aliases left out and why, the rows the
    retention setting deleted, and the database alias they are stored on."""

    using: str
    saved: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    deleted: int = 0


def _now() -> datetime:
    # Aware whatever USE_TZ says: the snapshot's times come from the server, aware.
    return datetime.now(UTC)


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: datetime | None) -> datetime | None:
    """A stored time, aware: with USE_TZ = False Django reads them naive, in TIME_ZONE."""
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value, timezone.get_default_timezone())


def storage_alias() -> str:
    """The database alias snapshots are written to (and read from): the routers'
    ``db_for_write`` for :class:`~django_dbtuning.models.Snapshot`."""
    from django.apps import apps

    if not apps.is_installed("django_dbtuning"):
        raise HistoryError(
            "snapshots live in django_dbtuning's table: add 'django_dbtuning' to "
            "INSTALLED_APPS and run manage.py migrate django_dbtuning"
        )
    from django_dbtuning.models import Snapshot

    return router.db_for_write(Snapshot)


def retention(value: object = None) -> timedelta | None:
    """``DBTUNING["HISTORY_RETENTION"]`` as a timedelta (None keeps every snapshot).

    A string needs its unit (PostgreSQL's: ``us ms s min h d``): a bare ``"90"`` would be
    90 ms by the duration rule every other setting follows, surely not what was meant.

    Raises:
        HistoryError: naming the setting, when the value is not a positive duration.
    """
    if value is None:
        from django.conf import settings

        user = getattr(settings, "DBTUNING", None)
        value = (user if isinstance(user, Mapping) else {}).get(
            RETENTION, SETTINGS[RETENTION].default
        )
        if value is None:
            return None
    where = f"DBTUNING[{RETENTION!r}]"
    use = "use a duration with its unit such as '90d' or '12h', a timedelta, or None"
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, str):
        ms = millisecond_value(value) if _UNIT.fullmatch(value) else None
        if ms is None:
            raise HistoryError(f"{where} is not a duration; {use}")
        span = timedelta(milliseconds=float(ms))
    else:
        raise HistoryError(
            f"{where} must be a duration, not {type(value).__name__}; {use}"
        )
    if span <= timedelta(0):
        raise HistoryError(f"{where} must be positive; {use}")
    return span


def parse_since(value: object, *, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (``7d``, ``12h``), or an ISO date or
    date-time (naive ones in the current time zone), as an aware datetime.

    Raises:
        HistoryError: naming ``--since``; the value is not echoed when it is not a str.
    """
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, timedelta):
        when = now - value
    elif isinstance(value, date):
        when = datetime.combine(value, datetime.min.time())
    elif isinstance(value, str):
        when = _since_text(value.strip(), now)
    else:
        raise HistoryError(
            f"--since must be a str, not {type(value).__name__}; {_USE_SINCE}"
        )
    if timezone.is_naive(when):
        when = timezone.make_aware(when, timezone.get_current_timezone())
    if when > now:
        raise HistoryError(f"--since {when.isoformat()} is in the future; {_USE_SINCE}")
    return when


def _since_text(text: str, now: datetime) -> datetime:
    if _UNIT.fullmatch(text):
        ms = millisecond_value(text)
        if ms is not None and ms > 0:
            try:
                return now - timedelta(milliseconds=float(ms))
            except OverflowError:
                raise HistoryError(
                    f"--since {text!r} reaches before year 1; {_USE_SINCE}"
                ) from None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    shown = text if len(text) <= 40 else f"{text[:37]}..."
    raise HistoryError(f"--since {shown!r} is not a duration or a date; {_USE_SINCE}")


def storage_error(
    doing: str, using: str, exc: DatabaseError, advice: str = ""
) -> HistoryError:
    """A :class:`HistoryError` for a failure on the alias that stores snapshots: its line
    redacted as the report's own connection errors are (a password can equal the role or
    database name the server echoes)."""
    line = redact(
        f"{doing} on database alias {using!r}: {first_line(exc)}",
        secrets(connections[using].settings_dict),
    )
    return HistoryError(f"{line} {advice}".rstrip())


def _check_migrated(using: str) -> None:
    from django_dbtuning.models import Snapshot

    run = f"run manage.py migrate django_dbtuning --database {using}"
    connection = connections[using]
    try:
        loader = MigrationLoader(connection)
        leaves = loader.graph.leaf_nodes("django_dbtuning")
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
    except DatabaseError as exc:
        raise storage_error("cannot read the snapshot table", using, exc) from None
    if Snapshot._meta.db_table not in tables or any(
        leaf not in loader.applied_migrations for leaf in leaves
    ):
        raise HistoryError(
            f"the snapshot table of django_dbtuning is not migrated on database alias "
            f"{using!r}: {run}"
        )


def take(report: Report) -> tuple[dict[str, SnapshotData], dict[str, str]]:
    """Each reachable PostgreSQL alias' state now; and the aliases left out, with why.

    A report run with ``snapshot=True`` read it already, on its own connections; any
    other report's aliases are read again over a connection of the snapshot's own."""
    states: dict[str, SnapshotData] = {}
    skipped: dict[str, str] = {}
    for alias, db in report.databases.items():
        if not db.reachable:
            skipped[alias] = f"unreachable ({db.error})"
        elif db.kind != "postgresql":
            skipped[alias] = "a PgBouncer admin console holds no tables"
        elif db.same_database_as is not None:
            skipped[alias] = f"same database as alias {db.same_database_as!r}"
        elif db.snapshot is not None:
            states[alias] = with_findings(db.snapshot, report)
        else:
            try:
                states[alias] = collect(alias, report, connections.settings[alias])
            except SnapshotUnavailable as exc:
                skipped[alias] = str(exc)
    return states, skipped


def save_states(
    states: Mapping[str, SnapshotData], skipped: Mapping[str, str] | None = None
) -> SaveResult:
    """Store ``states`` (from :func:`take`) and delete snapshots older than the
    retention, in one transaction on :func:`storage_alias`.

    Raises:
        HistoryError: the table is not migrated, the setting is wrong, or the database
            refused the write (a read-only role, a replica); the message names the alias.
    """
    keep = retention()
    using = storage_alias()
    from django_dbtuning.models import Snapshot

    for alias in states:
        if problem := _alias_too_long(alias):
            raise HistoryError(f"cannot save the snapshot: {problem}")
    _check_migrated(using)
    result = SaveResult(using=using, skipped=dict(skipped or {}))
    try:
        with transaction.atomic(using=using):
            for alias, data in states.items():
                result.saved[alias] = Snapshot.objects.using(using).create(
                    alias=alias,
                    taken_at=data.taken_at,
                    database=data.database,
                    server_version=data.server_version,
                    stats_reset=data.stats_reset,
                    statements_reset=data.statements_reset,
                    data=to_document(data),
                )
            if keep is not None:
                cutoff = _now() - keep
                # Never the rows just written: a retention shorter than the run.
                kept = [row.pk for row in result.saved.values()]
                old = Snapshot.objects.using(using).filter(taken_at__lt=cutoff)
                result.deleted, _ = old.exclude(pk__in=kept).delete()
    except DatabaseError as exc:
        raise storage_error(
            "cannot save the snapshot",
            using,
            exc,
            "(a read-only role or a replica? route Snapshot writes to a writable alias "
            "with a database router)",
        ) from None
    return result


def closest(alias: str, when: datetime) -> SnapshotData:
    """The alias' newest snapshot taken at or before ``when``.

    Raises:
        HistoryError: none is that old (naming the oldest there is), or the table is not
            migrated.
    """
    using = storage_alias()
    from django_dbtuning.models import Snapshot

    _check_migrated(using)
    rows = Snapshot.objects.using(using).filter(alias=alias)
    try:
        row = rows.filter(taken_at__lte=when).order_by("-taken_at").first()
        oldest = None if row else rows.order_by("taken_at").first()
    except DatabaseError as exc:
        raise storage_error("cannot read snapshots", using, exc) from None
    if row is None:
        shown = f"{when:%Y-%m-%d %H:%M:%S %Z}".strip()
        if oldest is None:
            raise HistoryError(
                f"no snapshot of alias {alias!r} yet: run dbreport --save first (--since "
                f"{shown} needs one taken at or before then)"
            )
        raise HistoryError(
            f"no snapshot of alias {alias!r} at or before {shown} (--since); the oldest "
            f"is from {oldest.taken_at:%Y-%m-%d %H:%M:%S %Z}"
        )
    return from_row(row)


def from_row(row: Any) -> SnapshotData:
    """A stored ``Snapshot`` row as :class:`SnapshotData`, its times aware.

    Raises:
        HistoryError: the row's document is not one this version wrote (edited by hand,
            cut short, another format); the message names the row.
    """
    problem = unreadable(row.data)
    if problem is None:
        try:
            return from_document(
                row.data,
                alias=row.alias,
                taken_at=_aware(row.taken_at),
                database=row.database,
                server_version=row.server_version,
                stats_reset=_aware(row.stats_reset),
                statements_reset=_aware(row.statements_reset),
                id=row.pk,
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            problem = f"{type(exc).__name__}: {first_line(exc)}"
    # A row read as empty would compare as "everything is new": refuse it by name.
    raise HistoryError(
        f"snapshot #{row.pk} of alias {row.alias!r} cannot be read ({problem}); "
        "delete that row (django_dbtuning.models.Snapshot) to compare with another"
    )


def compare_since(
    report: Report,
    since: object,
    *,
    top: int = 10,
    states: Mapping[str, SnapshotData] | None = None,
) -> list[Comparison]:
    """Each alias of ``report`` now against its newest snapshot at or before ``since``
    (``"7d"``, an ISO date, a datetime or a timedelta).

    ``states`` is the state now (from :func:`take`), when the caller has it already.

    Raises:
        HistoryError: ``since`` is wrong (naming ``--since``), or an alias has no
            snapshot that old (naming the oldest it has).
    """
    when = parse_since(since, now=_now())
    if states is None:
        states, _ = take(report)
    problems = []
    found = []
    for alias, data in states.items():
        try:
            old = closest(alias, when)
        except HistoryError as exc:
            problems.append(str(exc))
            continue
        found.append(compare(old, data, top=top, snapshot_id=old.id))
    if problems:
        raise HistoryError("; ".join(problems))
    return found


@dataclass
class HistoryRun:
    """``--save`` and ``--since`` for one command run: the comparisons, what was saved."""

    comparisons: list[Comparison] = field(default_factory=list)
    saved: SaveResult | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """Aliases neither saved nor compared, and why."""

    def messages(self) -> list[str]:
        """One line per saved snapshot and per alias left out."""
        if self.saved is None:
            return [
                f"no comparison for alias {alias!r}: {why}"
                for alias, why in self.skipped.items()
            ]
        lines = [
            f"saved snapshot #{row.pk} of alias {alias!r} on database alias "
            f"{self.saved.using!r}"
            for alias, row in self.saved.saved.items()
        ]
        lines += [
            f"no snapshot of alias {alias!r}: {why}"
            for alias, why in self.saved.skipped.items()
        ]
        if self.saved.deleted:
            lines.append(
                f"deleted {self.saved.deleted} snapshot(s) older than "
                f"DBTUNING[{RETENTION!r}]"
            )
        return lines


def check_options(*, save: object, since: object, format: str) -> None:
    """Refuse wrong ``--save``/``--since`` values before the report runs."""
    if not isinstance(save, bool):
        raise HistoryError(
            f"--save is a flag (True or False), not {type(save).__name__}"
        )
    if since is None:
        if save:
            retention()
        return
    if format == "prometheus":
        raise HistoryError(
            "--since has no Prometheus form (comparisons are per object); use text or json"
        )
    parse_since(since, now=_now())
    if save:
        retention()


def run(report: Report, *, save: bool, since: object, top: int) -> HistoryRun:
    """Compare with the snapshot ``since`` names (first), then save this run."""
    outcome = HistoryRun()
    if not save and since is None:
        return outcome
    states, outcome.skipped = take(report)
    if since is not None:
        outcome.comparisons = compare_since(report, since, top=top, states=states)
    if save:
        outcome.saved = save_states(states, outcome.skipped)
    return outcome


def save_snapshot(report: Report) -> SaveResult:
    """Store a snapshot of every alias ``report`` reached (what ``dbreport --save``
    does), deleting those older than ``DBTUNING["HISTORY_RETENTION"]``.

    A report from ``run_report(snapshot=True)`` carries what is stored already; any
    other is read again over new connections (the same content, a little slower)."""
    states, skipped = take(report)
    return save_states(states, skipped)


@register()
def check_history_retention(**kwargs: Any) -> list[CheckMessage]:
    """``HISTORY_RETENTION`` by the rule ``--save`` applies (dbtuning.E057); a value
    of the wrong type is dbtuning.E002's."""
    value = get_settings().history_retention
    if not isinstance(value, str | timedelta):
        return []
    try:
        retention(value)
    except HistoryError as exc:
        return [
            Error(
                f"{exc}.",
                hint="dbreport --save refuses to run with it; the default is '90d'.",
                id="dbtuning.E057",
            )
        ]
    return []


def _alias_too_long(alias: str) -> str | None:
    from django_dbtuning.models import Snapshot

    limit = Snapshot._meta.get_field("alias").max_length or 0
    long = f"the DATABASES alias {alias[:20]!r}… is {len(alias)} characters long"
    return (
        None if len(alias) <= limit else f"{long}, and snapshots store at most {limit}"
    )


@register()
def check_history_aliases(**kwargs: Any) -> list[CheckMessage]:
    """A DATABASES alias longer than ``Snapshot.alias`` holds (dbtuning.E058)."""
    from django.apps import apps
    from django.conf import settings

    if not apps.is_installed("django_dbtuning"):
        return []
    return [
        Error(
            f"{problem}: dbreport --save cannot store its snapshots.",
            hint="Use a shorter alias in DATABASES.",
            id="dbtuning.E058",
        )
        for alias in settings.DATABASES
        if (problem := _alias_too_long(str(alias)))
    ]
