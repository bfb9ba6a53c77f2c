"""``manage.py dbreport``: pool, connection, index, table and query findings."""

from __future__ import annotations

import os
import tempfile
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_dbtuning.report import SECTIONS, as_json, as_prometheus, as_text, run_report

FORMATS = ("text", "json", "prometheus")


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


def _write_atomically(path: Path, text: str) -> None:
    # A scraper (node_exporter's textfile collector) must never read a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    help = (
        "Report pool, connection, index, table and query statistics of PostgreSQL "
        "databases with concrete findings, as text, JSON or Prometheus exposition. "
        "Read-only; safe on production."
    )
    # The report opens its own read-only connections; Django's checks are not needed.
    requires_system_checks: list[str] = []

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
            "--output", metavar="FILE", help="Write the report to FILE (atomically)."
        )
        parser.add_argument(
            "--fail-on",
            choices=("warning", "error"),
            help="Exit with status 1 when a finding is at least this severe (for CI).",
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

    def handle(
        self,
        *,
        databases: list[str] | None,
        format: str,
        sections: list[str] | None,
        output: str | None,
        fail_on: str | None,
        top: int,
        per_index: bool,
        **options: Any,
    ) -> None:
        if top < 0:
            raise CommandError(f"--top must be >= 0, got {top}")
        try:
            report = run_report(databases, sections=_sections(sections), top=top)
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
            colour = output is None and not options.get("no_color")
            text = as_text(report, style=self.style if colour else None)
        if output:
            _write_atomically(Path(output), text)
        else:
            self.stdout.write(text, ending="")
        unreachable = report.unreachable()
        if unreachable:
            raise CommandError(
                "; ".join(f"{db.alias}: {db.error}" for db in unreachable),
                returncode=2,
            )
        if fail_on:
            failing = report.at_least("warning" if fail_on == "warning" else "error")
            if failing:
                codes = sorted({f.code for f in failing})
                raise CommandError(
                    f"{len(failing)} finding(s) at {fail_on} or worse: {', '.join(codes)}",
                    returncode=1,
                )
