"""Baselines: ``dbreport --write-baseline FILE`` and ``--baseline FILE``.

The file records today's findings by identity (:mod:`.identity`: code and object, no
numbers), so that a team can adopt ``--fail-on warning`` on an existing database and fail
only on what is new. It is small, sorted JSON meant to be committed and reviewed::

    {
      "version": 1,
      "findings": [
        {"code": "unused_index", "object": "shop_order_status_idx", "section": "indexes",
         "label": "Unused index shop_order_status_idx on shop_order (shop.Order)"}
      ]
    }

Entries are sorted by code and object, one per identity (two aliases of one database give
one entry), with a trailing newline and no timestamp: rewriting the file for the same
database changes nothing. Findings that escalate towards an outage
(:data:`.identity.ESCALATING`: wraparound, sequence overflow) also record their
``severity``: the same finding at a worse severity is new, never known. Comparing marks
each current finding known or new, and each entry that matches no finding resolved, but
only when the check that would find it ran fully (its section was reported, completely;
unused indexes also need old enough statistics): an entry the report could not look for
is "not checked", never resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django_dbtuning.report import output
from django_dbtuning.report.findings import (
    SEVERITIES,
    SEVERITY_RANK,
    DatabaseReport,
    Finding,
    Report,
)
from django_dbtuning.report.identity import ESCALATING, STATS_TOO_YOUNG, Key, key, label
from django_dbtuning.report.plan_findings import CHECKS as PLAN_CHECKS

PLAN_CODES = frozenset(PLAN_CHECKS)
"""Findings only ``--explain`` looks for."""

VERSION = 1
MAX_BYTES = 16 * 1024 * 1024


class BaselineError(ValueError):
    """The baseline file cannot be read or written; one line naming the file."""


@dataclass(frozen=True)
class Entry:
    """One finding the baseline knows: its identity and what a reviewer reads."""

    code: str
    object: str
    label: str = ""
    section: str | None = None
    severity: str | None = None
    """The severity it was accepted at (escalating codes only); None: any."""

    @property
    def key(self) -> Key:
        return Key(self.code, self.object)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"code": self.code, "object": self.object}
        if self.section is not None:
            found["section"] = self.section
        if self.severity is not None:
            found["severity"] = self.severity
        found["label"] = self.label
        return found

    def knows(self, finding: Finding) -> bool:
        """Whether ``finding`` (of this identity) is no worse than what was accepted."""
        return self.severity is None or (
            SEVERITY_RANK[finding.severity] <= SEVERITY_RANK[self.severity]
        )


@dataclass(frozen=True)
class Baseline:
    """A baseline file's entries, by identity."""

    path: str
    entries: dict[Key, Entry]


@dataclass
class Comparison:
    """The report against a baseline: known, new, resolved and unchecked entries."""

    path: str
    known: int = 0
    new: int = 0
    resolved: list[Entry] = field(default_factory=list)
    unchecked: list[Entry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "known": self.known,
            "new": self.new,
            "resolved": [entry.as_dict() for entry in self.resolved],
            "not_checked": [entry.as_dict() for entry in self.unchecked],
        }

    def summary(self) -> str:
        """The one line text output shows."""
        line = (
            f"{self.known} known finding{'' if self.known == 1 else 's'} from baseline "
            f"{self.path} hidden; {self.new} new; {len(self.resolved)} resolved"
        )
        if self.unchecked:
            line += (
                f"; {len(self.unchecked)} not checked (section not run, or a check "
                "incomplete)"
            )
        return line


# -- the file ------------------------------------------------------------------------------


def entries_of(findings: Iterable[Finding]) -> list[Entry]:
    """The baseline entries for ``findings``: one per identity, sorted."""
    found: dict[Key, Entry] = {}
    for finding in findings:
        identity = key(finding)
        if identity is None:
            continue
        severity = finding.severity if finding.code in ESCALATING else None
        known = found.get(identity)
        if known is not None and known.severity is not None and severity is not None:
            # Two aliases of one database: the worst of them is what was accepted.
            if SEVERITY_RANK[severity] > SEVERITY_RANK[known.severity]:
                found[identity] = replace(known, severity=severity)
        elif known is None:
            found[identity] = Entry(
                identity.code,
                identity.object,
                label(finding),
                finding.section,
                severity,
            )
    return [found[k] for k in sorted(found)]


def dumps(entries: Iterable[Entry]) -> str:
    """The file's text: sorted, one entry per identity, a trailing newline."""
    unique = {entry.key: entry for entry in entries}
    document = {
        "version": VERSION,
        "findings": [unique[k].as_dict() for k in sorted(unique)],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_baseline(report: Report, path: str) -> int:
    """Write ``report``'s findings to the baseline file ``path`` (atomically, as
    ``--output`` writes), with the entries of the baseline it was compared with that it
    could not check; returns how many entries it holds.

    Raises:
        BaselineError: the file cannot be written (the message names it).
    """
    entries = entries_of(report.findings)
    if report.baseline is not None:
        # What the compared baseline knew and this run could not look for (a section
        # not run, a check that timed out) is not resolved: it stays known.
        entries += report.baseline.unchecked
    try:
        output.write(path, dumps(entries))
    except output.OutputError as exc:
        # output's messages name the option they were written for.
        raise BaselineError(
            str(exc).replace("--output", "--write-baseline", 1)
        ) from None
    return len(entries)


def check_writable(path: str) -> None:
    """Refuse an unwritable ``--write-baseline`` before the report runs."""
    try:
        output.destination(path)
    except output.OutputError as exc:
        raise BaselineError(
            str(exc).replace("--output", "--write-baseline", 1)
        ) from None


def _refuse(path: str, problem: str) -> BaselineError:
    return BaselineError(" ".join(f"--baseline {path}: {problem}".split()))


def loads(text: str, path: str = "<baseline>") -> Baseline:
    """Parse a baseline file's text; raises :class:`BaselineError` naming ``path``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(
            path, f"not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    except RecursionError:
        raise _refuse(path, "not valid JSON (nested too deeply)") from None
    except ValueError:
        # json reads a number of more than sys.get_int_max_str_digits() digits as an
        # error that is no JSONDecodeError.
        raise _refuse(path, "not valid JSON (a number too long to read)") from None
    if not isinstance(document, dict):
        raise _refuse(path, "not a dbreport baseline (expected a JSON object)")
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise _refuse(
            path,
            f"baseline version {version!r} is not supported (this dbreport reads "
            f"version {VERSION}; write a new one with --write-baseline)",
        )
    items = document.get("findings")
    if not isinstance(items, list):
        raise _refuse(path, "'findings' must be a list")
    entries: dict[Key, Entry] = {}
    for number, item in enumerate(items, 1):
        entry = _entry(item)
        if entry is None:
            raise _refuse(
                path,
                f"finding {number} must be an object with string 'code' and 'object' "
                "(and optional string 'label' and 'section', and 'severity' one of "
                f"{', '.join(SEVERITIES)})",
            )
        entries.setdefault(entry.key, entry)
    return Baseline(path, entries)


def _entry(item: Any) -> Entry | None:
    if not isinstance(item, dict):
        return None
    code, name = item.get("code"), item.get("object")
    text, section = item.get("label", ""), item.get("section")
    severity = item.get("severity")
    if not (isinstance(code, str) and code and isinstance(name, str)):
        return None
    if not isinstance(text, str) or not (section is None or isinstance(section, str)):
        return None
    if not (severity is None or (isinstance(severity, str) and severity in SEVERITIES)):
        return None
    return Entry(code, name, text, section, severity)


def load_baseline(path: str | Path) -> Baseline:
    """Read the baseline file ``path``.

    Raises:
        BaselineError: missing, unreadable, not JSON, not a baseline, or another version;
            the message names the file and the problem.
    """
    name = str(path)
    try:
        with open(name, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _refuse(name, "no such file (create it with --write-baseline)") from None
    except IsADirectoryError:
        raise _refuse(name, "is a directory") from None
    except OSError as exc:
        raise _refuse(name, f"cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise _refuse(name, f"larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(name, "not UTF-8 text") from None
    return loads(text, name)


# -- comparing -----------------------------------------------------------------------------


def apply_baseline(report: Report, baseline: Baseline) -> Comparison:
    """Mark ``report``'s findings known (``baseline = True``) or new, and record the
    comparison (resolved and unchecked entries) as ``report.baseline``."""
    comparison = Comparison(baseline.path)
    seen: set[Key] = set()
    for finding in report.findings:
        identity = key(finding)
        entry = baseline.entries.get(identity) if identity is not None else None
        # Known at a worse severity than accepted (an escalating code): new.
        finding.baseline = entry is not None and entry.knows(finding)
        if identity is not None:
            seen.add(identity)
        if finding.baseline:
            comparison.known += 1
        elif identity is not None:
            # A finding without identity (a gap, a session) is shown, never "new".
            comparison.new += 1
    for identity in sorted(baseline.entries):
        if identity in seen:
            continue
        entry = baseline.entries[identity]
        if _checked(report, entry):
            comparison.resolved.append(entry)
        else:
            comparison.unchecked.append(entry)
    report.baseline = comparison
    return comparison


def _looked(report: Report, db: DatabaseReport, entry: Entry) -> bool:
    """Whether ``db``'s report could have found ``entry`` again."""
    if not db.reachable or db.same_database_as is not None:
        return False
    if entry.code == "unused_index" and any(
        f.code == STATS_TOO_YOUNG and f.database == db.alias for f in report.findings
    ):
        return False
    if entry.code in PLAN_CODES and not any(c.name == "explain" for c in db.checks):
        return False  # a run without --explain plans nothing
    if entry.section is None:
        return db.complete
    return entry.section in report.sections and all(
        check.complete for check in db.checks if check.section == entry.section
    )


def _checked(report: Report, entry: Entry) -> bool:
    # Entries name no database: the one that holds it may be any the report covers, so
    # every one of them (a second alias of one database aside) must have looked.
    databases = [db for db in report.databases.values() if db.same_database_as is None]
    return bool(databases) and all(_looked(report, db, entry) for db in databases)


def text_lines(report: Report) -> list[str]:
    """The summary line and the resolved entries, for the text output."""
    comparison = report.baseline
    if comparison is None:
        return []
    lines = [comparison.summary()]
    shown = comparison.resolved[: report.top] if report.top else comparison.resolved
    for entry in shown:
        lines.append(f"  resolved: {entry.code} {entry.object} ({entry.label})")
    hidden = len(comparison.resolved) - len(shown)
    if hidden:
        lines.append(f"  … {hidden} more resolved (--top 0 or --format json for all)")
    return lines
