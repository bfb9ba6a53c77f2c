"""``manage.py dbreport``: pool, connection, index, table and query findings."""

from __future__ import annotations

import json
import os
import sys
from argparse import ArgumentParser
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_dbtuning.report import (
    SECTIONS,
    Report,
    as_json,
    as_prometheus,
    as_text,
    history,
    run_report,
)
from django_dbtuning.report import baseline as report_baseline
from django_dbtuning.report import output as report_output
from django_dbtuning.report.compare import as_text as as_since_text

FORMATS = ("text", "json", "prometheus")


def add_history_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--save",
        action="store_true",
        help=(
            "Store a snapshot (sizes, row counts, statement totals, findings) in "
            "django_dbtuning's table; snapshots older than HISTORY_RETENTION go."
        ),
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help=(
            "Compare with the newest snapshot at or before WHEN: a duration back "
            "from now (7d, 12h) or an ISO date; text and json."
        ),
    )


def add_baseline_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--baseline",
        metavar="FILE",
        help=(
            "Compare with a baseline file: its findings are known (hidden in text, "
            '"baseline": true in JSON) and --fail-on ignores them; new and resolved '
            "are reported."
        ),
    )
    parser.add_argument(
        "--write-baseline",
        metavar="FILE",
        help=(
            "Write today's findings to FILE (sorted JSON, atomically) as the baseline "
            "to compare with later; may be the --baseline file, to accept the current "
            "state."
        ),
    )
    parser.add_argument(
        "--all",
        action="store_true",
        dest="show_all",
        help=(
            "Text: list every finding, third-party apps' one by one and those known "
            "from --baseline too."
        ),
    )


def add_explain_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--explain",
        nargs="?",
        type=int,
        const=20,
        default=0,
        metavar="N",
        help=(
            "Plan the top N statements of pg_stat_statements (default 20) with EXPLAIN "
            "(GENERIC_PLAN), PostgreSQL 16+, read-only and rolled back, never ANALYZE; "
            "report sequential scans, spilling sorts and nested loops their plans show."
        ),
    )


def _sections(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    chosen = [
        part.strip() for value in values for part in value.split(",") if part.strip()
    ]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise CommandError(
            f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return chosen


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _output(raw: str, text: str | None = None) -> None:
    """Check ``--output`` (before the report runs), or write ``text`` to it."""
    try:
        if text is None:
            report_output.destination(raw)
        else:
            report_output.write(raw, text)
    except report_output.OutputError as exc:
        raise CommandError(str(exc), returncode=1) from None


def _apart(output: str | None, baseline: str | None, written: str | None) -> None:
    """Refuse ``--output`` naming the file ``--baseline`` reads or ``--write-baseline``
    writes: one would silently replace the other."""
    for flag, path in (("--baseline", baseline), ("--write-baseline", written)):
        if output and path and report_output.same_file(output, path):
            raise CommandError(
                f"--output and {flag} name the same file ({path}): one would replace "
                "the other; write the report to another file",
                returncode=1,
            )


class Command(BaseCommand):
    help = (
        "Report pool, connection, index, table and query statistics of PostgreSQL "
        "databases with concrete findings, as text, JSON or Prometheus exposition. "
        "Read-only; safe on production."
    )
    # The report opens its own read-only connections; Django's checks are not needed.
    requires_system_checks: list[str] = []

    def create_parser(
        self, prog_name: str, subcommand: str, **kwargs: Any
    ) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str) -> NoReturn:
            # Exit code 2 means "a database was unreachable" (README): a wrong argument
            # is 1, in one line, from the command line and from call_command alike
            # (argparse would print the usage and exit 2).
            text = _one_line(f"{message} (see {parser.prog} --help)")
            if parser.called_from_command_line:
                self.stderr.write(f"CommandError: {text}")
                sys.exit(1)
            raise CommandError(text, returncode=1)

        parser.error = error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="A DATABASES alias (repeatable); default: every PostgreSQL alias.",
        )
        parser.add_argument(
            "--format", choices=FORMATS, default="text", help="Output format."
        )
        parser.add_argument(
            "--section",
            action="append",
            dest="sections",
            metavar="SECTIONS",
            help=f"Comma-separated sections (repeatable): {','.join(SECTIONS)}.",
        )
        parser.add_argument(
            "--output",
            metavar="FILE",
            help=(
                "Write the report to FILE: a regular file atomically (a symlink's "
                "target), a device or FIFO in place."
            ),
        )
        parser.add_argument(
            "--fail-on",
            choices=("warning", "error"),
            help=(
                "Exit with status 1 when a finding is at least this severe, or when a "
                "check could not run (check_incomplete, warning level), for CI."
            ),
        )
        parser.add_argument(
            "--allow-partial",
            action="store_true",
            help=(
                "With --fail-on: accept a report whose checks did not all run "
                "(check_incomplete findings are still reported)."
            ),
        )
        parser.add_argument(
            "--top",
            type=int,
            default=10,
            metavar="N",
            help="Rows per list and info findings per code in text (0 = all).",
        )
        parser.add_argument(
            "--per-index",
            action="store_true",
            help="Prometheus: one series per index (scans, size); high cardinality.",
        )
        add_baseline_arguments(parser)
        add_explain_argument(parser)
        add_history_arguments(parser)

    def handle(
        self,
        *,
        databases: list[str] | None,
        format: str,
        sections: list[str] | None,
        output: str | None,
        fail_on: str | None,
        allow_partial: bool,
        top: int,
        per_index: bool,
        **options: Any,
    ) -> None:
        # call_command(format=...) skips argparse's choices: check them here too.
        if format not in FORMATS:
            raise CommandError(f"--format must be one of {', '.join(FORMATS)}")
        if fail_on not in (None, "warning", "error"):
            raise CommandError("--fail-on must be warning or error")
        if type(top) is not int or top < 0:
            raise CommandError(f"--top must be an int >= 0, got {top!r}")
        chosen = _sections(sections)
        save, since = options.get("save", False), options.get("since")
        try:
            history.check_options(save=save, since=since, format=format)
        except history.HistoryError as exc:
            raise CommandError(str(exc)) from None
        baseline_file, write_file = self._baseline_options(options)
        target = output or None
        _apart(target, baseline_file, write_file)
        if target is not None:
            # A missing directory is not created: a typo in a node_exporter textfile
            # directory would otherwise write metrics no scraper ever reads.
            _output(target)
        try:
            report = run_report(
                databases,
                sections=chosen,
                top=top,
                requested=chosen or (),
                baseline=baseline_file,
                explain=options.get("explain") or 0,
                snapshot=bool(save) or since is not None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if format == "json":
            text = as_json(report)
        elif format == "prometheus":
            try:
                text = as_prometheus(report, per_index=per_index)
            except ImportError as exc:
                raise CommandError(str(exc)) from None
        else:
            colour = target is None and not options.get("no_color")
            text = as_text(
                report,
                style=self.style if colour else None,
                everything=bool(options.get("show_all")),
            )
        text = self._history(report, text, format, save=save, since=since, top=top)
        if target is not None:
            _output(target, text)
        else:
            self.stdout.write(text, ending="")
        unreachable = report.unreachable()
        if write_file is not None:
            self._write_baseline(report, write_file)
        if unreachable:
            raise CommandError(
                _one_line("; ".join(f"{db.alias}: {db.error}" for db in unreachable)),
                returncode=2,
            )
        if fail_on:
            self._fail_on(report, fail_on, allow_partial=allow_partial)

    def _history(self, report: Report, text: str, format: str, **options: Any) -> str:
        """``--since`` appended to the output, ``--save`` done (its lines on stderr)."""
        try:
            outcome = history.run(report, **options)
        except history.HistoryError as exc:
            raise CommandError(str(exc)) from None
        for line in outcome.messages():
            self.stderr.write(line)
        if not outcome.comparisons:
            return text
        if format == "json":
            document = json.loads(text)
            document["since"] = {c.alias: c.as_dict() for c in outcome.comparisons}
            return json.dumps(document, indent=2) + "\n"
        return f"{text}\nHistory\n{as_since_text(outcome.comparisons)}"

    def _baseline_options(
        self, options: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """``--baseline`` and ``--write-baseline``, checked before the report runs."""
        found = []
        for name in ("baseline", "write_baseline"):
            value = options.get(name) or None
            if value is not None and not isinstance(value, str | os.PathLike):
                flag = "--" + name.replace("_", "-")
                raise CommandError(f"{flag} must be a path (str), got {value!r}")
            found.append(os.fspath(value) if value is not None else None)
        if found[1] is not None:
            try:
                report_baseline.check_writable(found[1])
            except report_baseline.BaselineError as exc:
                raise CommandError(str(exc)) from None
        return found[0], found[1]

    def _write_baseline(self, report: Report, path: str) -> None:
        """Write ``--write-baseline``; refused when an alias was unreachable (its
        findings would be missing, and come back as new)."""
        unreachable = [db.alias for db in report.unreachable()]
        if unreachable:
            self.stderr.write(
                f"baseline {path} not written: {', '.join(unreachable)} unreachable"
            )
            return
        try:
            count = report_baseline.write_baseline(report, path)
        except report_baseline.BaselineError as exc:
            raise CommandError(str(exc)) from None
        gaps = len(report.incomplete())
        self.stderr.write(
            f"wrote baseline {path}: {count} finding{'' if count == 1 else 's'}"
            + (
                f" ({gaps} check(s) incomplete: their findings may be missing)"
                if gaps
                else ""
            )
        )

    def _fail_on(self, report: Report, fail_on: str, *, allow_partial: bool) -> None:
        found, gaps = report.failures(
            "warning" if fail_on == "warning" else "error", allow_partial=allow_partial
        )
        problems = []
        if found:
            codes = sorted({f.code for f in found})
            new = " new" if report.baseline is not None else ""
            problems.append(
                f"{len(found)}{new} finding(s) at {fail_on} or worse: {', '.join(codes)}"
            )
        if gaps:
            checks = ", ".join(
                f"{f.database}/{f.data.get('check')} ({f.data.get('status')})"
                for f in gaps
            )
            problems.append(
                f"{len(gaps)} check(s) incomplete: {checks} (--allow-partial accepts "
                "a partial report)"
            )
        if problems:
            raise CommandError(_one_line("; ".join(problems)), returncode=1)
