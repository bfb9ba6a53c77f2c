"""Less noise, same truth: young statistics and third-party apps.

- **Young statistics.** An index without scans since the statistics were reset a few
  seconds ago is not unused, it is unobserved. Unused indexes are judged only once the
  statistics cover ``DBTUNING["UNUSED_INDEX_MIN_AGE"]`` (7 days by default); before that
  the report holds them back and says so in one info finding, ``stats_too_young``
  ("statistics too young to judge unused indexes: 2.6 s of 7 d").
  ``REPORT_THRESHOLDS["min_stats_age_days"]``, which only softened those findings to info,
  is a deprecated alias of the setting (``dbtuning.W055``).
- **Third-party apps.** Findings on tables of Django's contrib apps and installed
  packages (:mod:`.ownership`) are flagged ``third_party`` in JSON and folded into one
  line per code in text, unless ``--all``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django_dbtuning.report.findings import (
    SEVERITY_RANK,
    Finding,
    Report,
    Severity,
)
from django_dbtuning.report.humanize import human_bytes, human_duration
from django_dbtuning.report.identity import STATS_TOO_YOUNG
from django_dbtuning.report.ownership import third_party_app
from django_dbtuning.validation import is_number, millisecond_value

if TYPE_CHECKING:
    from django_dbtuning.report.probe import Probe

SETTING = "UNUSED_INDEX_MIN_AGE"
DEFAULT_MIN_AGE = "7d"
DEPRECATED_THRESHOLD = "min_stats_age_days"
_UNIT = re.compile(r"(?:us|ms|s|min|h|d)\s*\Z")
_USE = "use a duration such as '7d', '12h' or '30min', or a datetime.timedelta"


# -- UNUSED_INDEX_MIN_AGE ------------------------------------------------------------------


def min_age_problem(value: object) -> str | None:
    """Why ``UNUSED_INDEX_MIN_AGE = value`` is refused, in one line; None if it is fine."""
    where = f"DBTUNING[{SETTING!r}] is {value!r}"[:200]
    if isinstance(value, timedelta):
        return f"{where}, a negative duration; {_USE}" if value < timedelta(0) else None
    if not isinstance(value, str):
        return f"{where}; {_USE}"
    amount = millisecond_value(value)
    if amount is None or not _UNIT.search(value):
        return f"{where}, which is not a duration with a unit; {_USE}"
    if amount < 0:
        return f"{where}, a negative duration; {_USE}"
    return None


def _seconds(value: str | timedelta) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    amount = millisecond_value(value)
    return float(amount or 0) / 1000


def user_settings() -> Mapping[str, Any]:
    # The raw value, as dbreport's timeouts read theirs: the command runs without the
    # system checks, so a wrong value is refused rather than replaced unseen.
    from django.conf import settings

    user = getattr(settings, "DBTUNING", None)
    return user if isinstance(user, Mapping) else {}


def deprecated_min_age_days(user: Mapping[str, Any] | None = None) -> float | None:
    """``REPORT_THRESHOLDS["min_stats_age_days"]`` when set to a number >= 0."""
    thresholds = (user if user is not None else user_settings()).get(
        "REPORT_THRESHOLDS"
    )
    if not isinstance(thresholds, Mapping):
        return None
    days = thresholds.get(DEPRECATED_THRESHOLD)
    if not isinstance(days, int | float) or not is_number(days) or days < 0:
        return None
    return float(days)


def unused_index_min_age() -> float:
    """How long (seconds) the statistics must cover before unused indexes are judged.

    ``UNUSED_INDEX_MIN_AGE`` when set; else the deprecated
    ``REPORT_THRESHOLDS["min_stats_age_days"]``; else 7 days.

    Raises:
        ValueError: the setting is not a duration (the message names it).
    """
    user = user_settings()
    if SETTING not in user:
        days = deprecated_min_age_days(user)
        if days is not None:
            return days * 86_400
    value = user.get(SETTING, DEFAULT_MIN_AGE)
    problem = min_age_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return _seconds(value)


def statistics_too_young(probe: Probe, candidates: int, size_bytes: int) -> bool:
    """Whether the statistics are too young to call an index unused; when they are and
    some index looks unused, the one ``stats_too_young`` info finding says so."""
    age = probe.server.get("stats_age_seconds")
    if age is None:
        return False  # no reset time, no server start: nothing to hold back on
    minimum = unused_index_min_age()
    if float(age) >= minimum:
        return False
    if candidates:
        since = probe.server.get("stats_since") or "the server started"
        shown = f"{human_duration(float(age))} of {human_duration(minimum)}"
        now = probe.server.get("now")
        ready = (
            (now + timedelta(seconds=minimum - float(age))).astimezone(UTC)
            if isinstance(now, datetime)
            else None
        )
        when = f"after {ready:%Y-%m-%d %H:%M} UTC" if ready is not None else "later"
        probe.add(
            "info",
            STATS_TOO_YOUNG,
            f"statistics too young to judge unused indexes: {shown}",
            detail=(
                f"{candidates} index{'es' if candidates != 1 else ''} "
                f"({human_bytes(size_bytes)}) had no scans since {since}, but "
                f"statistics that cover {human_duration(float(age))} cannot tell an "
                "unused index from one a nightly or monthly job needs; unused indexes "
                f"are judged once they cover {human_duration(minimum)}."
            ),
            hint=(
                f"run dbreport again {when} (the statistics count from their last "
                "reset or the server's start); DBTUNING['UNUSED_INDEX_MIN_AGE'] sets "
                "the span ('0s' judges at once)"
            ),
            object="statistics",
            candidates=candidates,
            candidates_size_bytes=size_bytes,
            stats_age_seconds=float(age),
            min_age_seconds=minimum,
            judged_after=ready.isoformat() if ready is not None else None,
        )
    return True


# -- third-party apps ----------------------------------------------------------------------


def mark_third_party(findings: list[Finding]) -> None:
    """Flag findings on models of Django's contrib apps and installed packages."""
    from django.apps import apps

    owners: dict[str, bool] = {}
    for finding in findings:
        if not finding.model:
            continue
        app_label = finding.model.split(".", 1)[0]
        if app_label not in owners:
            try:
                owners[app_label] = third_party_app(apps.get_app_config(app_label))
            except LookupError:
                owners[app_label] = False
        finding.third_party = owners[app_label]


@dataclass
class Group:
    """Third-party findings of one code on one alias, shown as one line in text."""

    database: str
    code: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), key=lambda s: SEVERITY_RANK[s])

    def line(self) -> str:
        """The text after the severity mark."""
        apps = sorted({(f.model or "").split(".", 1)[0] for f in self.findings})
        count = len(self.findings)
        return (
            f"{self.code} · {self.database} · {count} finding"
            f"{'s' if count != 1 else ''} on tables of third-party apps "
            f"({', '.join(apps)}); --all shows each, --format json has them all"
        )


def visible(report: Report, *, everything: bool = False) -> list[Finding | Group]:
    """What the text output lists: findings known from the baseline left out, and
    third-party findings folded into one :class:`Group` per alias and code (at the
    place of its most severe finding); ``everything`` lists each finding."""
    items: list[Finding | Group] = []
    groups: dict[tuple[str, str], Group] = {}
    for finding in report.findings:
        if everything:
            items.append(finding)
            continue
        if finding.baseline:
            continue
        if not finding.third_party:
            items.append(finding)
            continue
        slot = (finding.database, finding.code)
        if slot not in groups:
            groups[slot] = Group(finding.database, finding.code)
            items.append(groups[slot])
        groups[slot].findings.append(finding)
    # A group of one says less than its finding.
    return [
        item.findings[0]
        if isinstance(item, Group) and len(item.findings) == 1
        else item
        for item in items
    ]
