"""Adversarial pass over baselines: a baseline never hides a finding it does not
identify, hostile files are refused with one line naming the file, and ``--fail-on``
fails closed when the baseline cannot be read."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.report import BaselineError, Finding, Report, load_baseline
from django_dbtuning.report.baseline import (
    apply_baseline,
    dumps,
    entries_of,
    loads,
)
from django_dbtuning.report.findings import DatabaseReport
from tests.report.test_report import dbreport

# Codes whose identity is the object the report names (all but the database-wide ones).
PER_OBJECT = [
    "unused_index",
    "duplicate_index",
    "invalid_index",
    "fk_without_index",
    "missing_index",
    "seq_scan_heavy",
    "dead_tuples",
    "xid_wraparound",
    "wraparound_vacuum_due",
    "sequence_near_overflow",
    "plan_seq_scan",
    "slow_query",
]
OBJECTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20
) | st.sampled_from(
    ["shop_order", '"Odd ""T"""', '"S".t', "queryid:1", "database:db", "database:x"]
)


def make(code: str, name: str, alias: str = "default") -> Finding:
    return Finding(
        database=alias,
        severity="error",
        code=code,
        title=f"{code} on {name}",
        detail="",
        hint="",
        object=name,
        section="tables",
    )


def report_of(*findings: Finding) -> Report:
    return Report(
        generated_at=datetime.now(UTC),
        sections=("tables", "indexes", "statements"),
        databases={"default": DatabaseReport(alias="default")},
        findings=list(findings),
    )


def hidden_by(known: Finding, current: Finding) -> bool:
    baseline = loads(dumps(entries_of([known])), "b.json")
    report = report_of(current)
    apply_baseline(report, baseline)
    return current.baseline


@given(st.sampled_from(PER_OBJECT), OBJECTS, OBJECTS)
def test_a_baseline_hides_only_the_object_it_names(code, known, other):
    hidden = hidden_by(make(code, known), make(code, other))
    both_database = known.startswith("database:") and other.startswith("database:")
    assert hidden == (known == other or both_database)


def test_a_table_near_wraparound_is_not_hidden_by_another_or_the_database():
    """Regression: every xid_wraparound had the identity "database", so a baseline
    written while one table (or the database) was near wraparound hid every other
    table's xid_wraparound error, and ``--fail-on error`` passed."""
    database = make("xid_wraparound", "database:shop")
    table = make("xid_wraparound", "shop_order")
    other = make("xid_wraparound", '"Other".big')
    assert not hidden_by(database, table)
    assert not hidden_by(table, other)
    assert not hidden_by(table, database)
    assert hidden_by(table, make("xid_wraparound", "shop_order"))
    # The database's own finding still fits a copy with another name.
    assert hidden_by(database, make("xid_wraparound", "database:shop_copy"))
    report = report_of(table, other)
    apply_baseline(report, loads(dumps(entries_of([database, table])), "b.json"))
    found, _ = report.failures("error")
    assert [f.object for f in found] == ['"Other".big']


def test_a_finding_escalating_towards_an_outage_is_new_at_a_worse_severity():
    """Regression: a baseline written while a table's xid age was at warning hid it at
    error too (identity has no numbers), and ``--fail-on error`` passed on a database
    nearing forced read-only mode."""
    warning = make("xid_wraparound", "shop_order")
    warning.severity = "warning"
    baseline = loads(dumps(entries_of([warning])), "b.json")
    assert json.loads(dumps(entries_of([warning])))["findings"][0]["severity"] == (
        "warning"
    )
    error = make("xid_wraparound", "shop_order")  # severity "error"
    report = report_of(error)
    apply_baseline(report, baseline)
    assert not error.baseline
    assert report.baseline.new == 1 and not report.baseline.resolved
    found, _ = report.failures("error")
    assert found == [error]
    # At the accepted severity or better it stays known.
    for severity in ("warning", "info"):
        same = make("xid_wraparound", "shop_order")
        same.severity = severity
        assert hidden_by(warning, same)


def test_other_codes_record_no_severity():
    entry = json.loads(dumps(entries_of([make("unused_index", "i")])))["findings"][0]
    assert "severity" not in entry
    assert hidden_by(make("unused_index", "i"), make("unused_index", "i"))


@given(
    st.sampled_from(["xid_wraparound", "sequence_near_overflow", "unused_index"]),
    st.lists(st.sampled_from(["info", "warning", "error"]), min_size=1, max_size=3),
    st.sampled_from(["info", "warning", "error"]),
)
def test_an_escalated_finding_is_never_hidden(code, accepted, now):
    """Two aliases of one database may see it at different severities: the worst one is
    what the baseline accepts."""
    known = []
    for number, severity in enumerate(accepted):
        finding = make(code, "t", alias=f"a{number}")
        finding.severity = severity
        known.append(finding)
    current = make(code, "t")
    current.severity = now
    baseline = loads(dumps(entries_of(known)), "b.json")
    report = report_of(current)
    apply_baseline(report, baseline)
    rank = ["info", "warning", "error"].index
    escalating = code != "unused_index"
    worse = rank(now) > max(rank(s) for s in accepted)
    assert current.baseline == (not (escalating and worse))


def test_a_wrong_severity_in_the_file_is_refused():
    text = (
        '{"version": 1, "findings": [{"code": "xid_wraparound", "object": "t", '
        '"severity": "fatal"}]}'
    )
    with pytest.raises(BaselineError, match="'severity' one of info, warning, error"):
        loads(text, "b.json")


# -- hostile files -----------------------------------------------------------------


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["version", "findings", "code", "object", "label", "section"]
            )
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(JSON)
def test_any_json_document_is_a_baseline_or_one_error_naming_the_file(document):
    text = json.dumps(document)
    try:
        baseline = loads(text, "hostile.json")
    except BaselineError as exc:
        assert str(exc).startswith("--baseline hostile.json: ")
        assert "\n" not in str(exc)
        return
    for entry in baseline.entries.values():
        assert isinstance(entry.code, str) and entry.code
        assert isinstance(entry.object, str)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_are_a_baseline_or_one_error_naming_the_file(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("b") / "b.json"
    path.write_bytes(raw)
    try:
        load_baseline(path)
    except BaselineError as exc:
        assert str(exc).startswith(f"--baseline {path}: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # json raises a bare ValueError for numbers past sys.get_int_max_str_digits().
        ('{"version": 1, "findings": [], "x": ' + "1" * 5000 + "}", "too long"),
        ("[" * 100_000, "nested too deeply"),
        ("\ufeff{}", "not valid JSON"),
        ('{"version": true, "findings": []}', "version True"),
        ('{"version": 1, "findings": {"code": "x"}}', "must be a list"),
        ('{"version": 1, "findings": [{"code": 1, "object": "x"}]}', "finding 1"),
        ('{"version": 1, "findings": [{"code": "", "object": "x"}]}', "finding 1"),
    ],
)
def test_hostile_text_is_refused_naming_the_file(text, problem):
    with pytest.raises(BaselineError, match=problem) as caught:
        loads(text, "b.json")
    assert str(caught.value).startswith("--baseline b.json: ")


def test_a_symlink_to_a_directory_or_a_dangling_one_is_refused(tmp_path):
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "dir", tmp_path / "to-dir.json")
    os.symlink(tmp_path / "missing", tmp_path / "dangling.json")
    with pytest.raises(BaselineError, match="is a directory"):
        load_baseline(tmp_path / "to-dir.json")
    with pytest.raises(BaselineError, match="no such file"):
        load_baseline(tmp_path / "dangling.json")


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: cheap to create
    with pytest.raises(BaselineError, match="larger than 16 MB"):
        load_baseline(path)


# -- --fail-on fails closed ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content",
    [
        None,  # missing
        "",
        "{",
        '{"version": 1, "findings": [], "x": ' + "9" * 5000 + "}",
        '{"version": 2, "findings": []}',
        "[]",
    ],
)
def test_fail_on_does_not_pass_when_the_baseline_cannot_be_read(tmp_path, content):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    out, err, code = dbreport(
        "--database",
        "default",
        "--section",
        "settings",
        "--baseline",
        str(path),
        "--fail-on",
        "error",
    )
    assert code != 0
    assert str(path) in err and "\n" not in err
    assert out == ""  # refused before any report is printed
