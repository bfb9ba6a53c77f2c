"""dbreport fails closed: what it could not look at is a finding (check_incomplete), and
--fail-on fails on it unless --allow-partial."""

from __future__ import annotations

import json

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from django_dbtuning.report import run_report, runner
from tests.report.test_report import (
    admin_connection,
    dbreport,
    findings,
    report_json,
)

pytestmark = pytest.mark.django_db


def gaps(document: dict) -> dict[str, dict]:
    return {f["data"]["check"]: f for f in findings(document, "check_incomplete")}


def test_a_lock_timeout_is_a_warning_gap_that_fails_ci(locked_volume, dbtuning):
    dbtuning(REPORT_LOCK_TIMEOUT="50ms")
    document = report_json("--database", "default", "--section", "indexes")
    gap = gaps(document)["index_inventory"]
    assert gap["severity"] == "warning"
    assert gap["object"] == "check:index_inventory"
    assert gap["data"]["status"] == "timeout"
    assert gap["data"]["sections"] == ["indexes"]
    assert "lock_timeout 50ms" in gap["detail"]
    assert "REPORT_LOCK_TIMEOUT" in gap["hint"] and "--allow-partial" in gap["hint"]
    assert document["databases"]["default"]["complete"] is False

    # No error finding in this section: only the gap makes --fail-on error fail.
    assert not [f for f in document["findings"] if f["severity"] == "error"]
    _, message, code = dbreport("--database", "default", "--section", "indexes")
    assert code == 0  # without --fail-on, a report is a report
    _, message, code = dbreport(
        "--database", "default", "--section", "indexes", "--fail-on", "error"
    )
    assert code == 1
    assert message.count("\n") == 0
    assert "default/index_inventory (timeout)" in message
    assert "--allow-partial" in message
    _, message, code = dbreport(
        "--database",
        "default",
        "--section",
        "indexes",
        "--fail-on",
        "error",
        "--allow-partial",
    )
    assert code == 0, message


def test_gaps_in_text_and_prometheus(locked_volume, dbtuning):
    dbtuning(REPORT_LOCK_TIMEOUT="50ms")
    text, _, _ = dbreport("--database", "default", "--section", "indexes")
    assert (
        "[WARNING] check_incomplete · default · Check index_inventory (indexes) timed "
        "out" in text
    )
    prom, _, _ = dbreport(
        "--database", "default", "--section", "indexes", "--format", "prometheus"
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prom)
        for s in family.samples
    }
    key = (
        "dbtuning_report_check_incomplete",
        (
            ("alias", "default"),
            ("check", "index_inventory"),
            ("section", "indexes"),
            ("status", "timeout"),
        ),
    )
    assert samples[key] == 1
    assert samples[("dbtuning_report_complete", (("alias", "default"),))] == 0
    assert (
        samples[
            (
                "dbtuning_findings",
                (
                    ("alias", "default"),
                    ("code", "check_incomplete"),
                    ("severity", "warning"),
                ),
            )
        ]
        >= 1
    )


def test_a_complete_report_says_so():
    document = report_json("--database", "default", "--section", "pool,settings")
    assert document["databases"]["default"]["complete"] is True
    assert not findings(document, "check_incomplete")
    prom, _, _ = dbreport(
        "--database", "default", "--section", "settings", "--format", "prometheus"
    )
    assert 'dbtuning_report_complete{alias="default"} 1.0' in prom
    assert "dbtuning_report_check_incomplete{" not in prom


def test_a_crashing_section_is_a_gap(monkeypatch):
    def broken(probe):
        raise KeyError("unexpected catalog shape")

    monkeypatch.setitem(runner.COLLECTORS, "settings", broken)
    report = run_report(["default"], sections=["settings"])
    (gap,) = report.incomplete()
    assert gap.data["check"] == "settings_section"
    assert gap.data["status"] == "error"
    assert "KeyError" in gap.detail
    found, failing = report.failures("error")
    assert failing == [gap] and not found
    assert report.failures("error", allow_partial=True) == ([], [])


def test_server_facts_failing_names_every_section(dbtuning):
    # statement_timeout 1 ms nearly always stops the first query; when the machine is
    # fast enough it did not, and there is nothing to check.
    dbtuning(REPORT_STATEMENT_TIMEOUT="1ms")
    report = run_report(["default"], sections=["indexes", "tables"])
    checks = {c.name: c for c in report.databases["default"].checks}
    if checks["server"].status == "ok":
        pytest.skip("the server answered within 1 ms")
    assert checks["indexes_section"].cause == "server"
    assert checks["tables_section"].cause == "server"
    gap = next(f for f in report.incomplete() if f.data["check"] == "server")
    # One finding for the cause, naming the sections it kept from running.
    assert gap.data["sections"] == ["indexes", "tables"]
    assert "indexes_section, tables_section" in gap.detail
    assert [f.data["check"] for f in report.incomplete()] == ["server"]


# -- pg_stat_statements: absent (an expected gap) and in another schema ---------------------


@pytest.fixture
def statements_extension():
    """Drop pg_stat_statements for one test; put it back in public afterwards."""
    with admin_connection() as conn:
        try:
            conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("the test role may not drop extensions")
        try:
            yield conn
        finally:
            conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
            conn.execute('DROP SCHEMA IF EXISTS "Monitoring" CASCADE')
            conn.execute("CREATE EXTENSION pg_stat_statements SCHEMA public")


def test_missing_extension_is_an_expected_gap(statements_extension):
    # Not asked for by name: info, --fail-on does not fail on it.
    report = run_report(["default"], sections=["statements"])
    (gap,) = report.incomplete()
    assert gap.severity == "info"
    assert gap.data["check"] == "statements" and gap.data["expected"] is True
    assert "pg_stat_statements is not installed" in gap.detail
    assert "shared_preload_libraries" in gap.hint
    assert report.failures("warning") == ([], [])

    # Asked for by name (--section statements): asking and getting nothing fails.
    out, message, code = dbreport(
        "--format", "json", "--database", "default", "--section", "statements",
        "--fail-on", "warning",
    )  # fmt: skip
    assert code == 1
    (gap,) = gaps(json.loads(out)).values()
    assert gap["severity"] == "warning"
    assert "default/statements (skipped)" in message
    _, message, code = dbreport(
        "--database", "default", "--section", "statements", "--fail-on", "warning",
        "--allow-partial",
    )  # fmt: skip
    assert code == 0, message


def test_pg_stat_statements_in_a_quoted_mixed_case_schema(statements_extension):
    conn = statements_extension
    conn.execute('CREATE SCHEMA "Monitoring"')
    conn.execute('CREATE EXTENSION pg_stat_statements SCHEMA "Monitoring"')
    # Dropping the extension keeps the server's statistics: without a reset, the whole
    # suite's heavier statements run before this one can push it out of the top 100.
    conn.execute('SELECT "Monitoring".pg_stat_statements_reset()')
    for i in range(25):
        # pages + 0: not through the pages index, whose "never scanned" other tests assert.
        conn.execute("SELECT title FROM reportapp_volume WHERE pages + 0 = %s", [i])
    document = report_json(
        "--database", "default", "--section", "statements", "--top", "0"
    )
    statements = document["databases"]["default"]["statements"]
    assert statements["installed"] is True
    assert statements["extension_schema"] == "Monitoring"
    checks = document["databases"]["default"]["checks"]
    assert checks["statements"]["status"] == "ok"
    assert checks["pg_stat_statements_info"]["status"] == "ok"
    assert not gaps(document)
    assert any(
        "reportapp_volume" in row["query"] and row["calls"] >= 25
        for row in statements["top"]
    )


# Last: the planted fixture (module-scoped) keeps an invalid index until the module ends.
def test_a_1ms_timeout_is_never_a_clean_report(planted, dbtuning):
    """The issue's case: every query times out, an invalid index is planted, and the
    report used to say "No findings." and exit 0 with --fail-on error."""
    dbtuning(REPORT_STATEMENT_TIMEOUT="1ms")
    out, message, code = dbreport("--database", "default", "--fail-on", "error")
    document = report_json("--database", "default")
    assert code == 1
    assert "No findings." not in out
    default = document["databases"]["default"]
    assert default["reachable"] is True
    incomplete = [name for name, c in default["checks"].items() if c["status"] != "ok"]
    # Whatever timed out on this machine is named, in JSON and in the exit message:
    # by a finding of its own, or by the finding of the check it needed.
    named = gaps(document)
    for name in incomplete:
        assert name in named or any(name in f["detail"] for f in named.values()), name
    if incomplete:
        assert default["complete"] is False
        assert "check(s) incomplete" in message
        assert all(
            f["severity"] == "warning" for f in findings(document, "check_incomplete")
        )
    else:  # a machine fast enough to answer in 1 ms still reports the invalid index
        assert "invalid_index" in message
