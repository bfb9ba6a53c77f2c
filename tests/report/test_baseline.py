"""dbreport --write-baseline / --baseline: adopt --fail-on on an existing database and
fail only on what is new."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.report import (
    BaselineError,
    Finding,
    Report,
    load_baseline,
    run_report,
    write_baseline,
)
from django_dbtuning.report.baseline import dumps, entries_of, loads
from django_dbtuning.report.identity import key
from tests.report.test_report import (
    admin_connection,
    dbreport,
    extra_alias,
    report_json,
)

pytestmark = pytest.mark.django_db

INDEXES = ("--database", "default", "--section", "indexes")


@pytest.fixture
def gone_index(reportapp):
    """An unused index that is in the baseline and then dropped: resolved."""
    with admin_connection() as conn:
        conn.execute(
            "CREATE INDEX IF NOT EXISTS baseline_gone ON reportapp_writer (name)"
        )
    yield "baseline_gone"
    with admin_connection() as conn:
        conn.execute("DROP INDEX IF EXISTS baseline_gone")


def plant_new_problem() -> None:
    """A failed CREATE INDEX CONCURRENTLY: one invalid_index (error), nothing else."""
    with admin_connection() as conn:
        conn.execute("DROP INDEX IF EXISTS baseline_new_invalid")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY baseline_new_invalid "
                "ON reportapp_volume (published)"
            )


@pytest.fixture
def new_problem():
    yield plant_new_problem
    with admin_connection() as conn:
        conn.execute("DROP INDEX IF EXISTS baseline_new_invalid")


def read(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_round_trip_with_one_new_problem_and_one_resolved(
    gone_index, new_problem, tmp_path
):
    path = tmp_path / "dbreport-baseline.json"
    out, err, code = dbreport(*INDEXES, "--write-baseline", str(path))
    assert code == 0, err
    written = path.read_text(encoding="utf-8")
    document = json.loads(written)
    assert document["version"] == 1
    entries = document["findings"]
    assert entries == sorted(entries, key=lambda e: (e["code"], e["object"]))
    assert written.endswith("}\n")
    gone = next(e for e in entries if e["object"] == "baseline_gone")
    assert gone == {
        "code": "unused_index",
        "object": "baseline_gone",
        "section": "indexes",
        "label": "Unused index baseline_gone on reportapp_writer (reportapp.Writer)",
    }
    assert not any(e["code"] == "check_incomplete" for e in entries)
    # The report itself is printed as usual.
    assert "== Findings" in out

    # The same database gives the same bytes: no timestamps, sizes or counts.
    dbreport(*INDEXES, "--write-baseline", str(path))
    assert path.read_text(encoding="utf-8") == written

    with admin_connection() as conn:
        conn.execute("DROP INDEX baseline_gone")
    new_problem()

    document = report_json(*INDEXES, "--baseline", str(path))
    new = [f for f in document["findings"] if not f["baseline"]]
    assert [(f["code"], f["object"]) for f in new] == [
        ("invalid_index", "baseline_new_invalid")
    ]
    known = [f for f in document["findings"] if f["baseline"]]
    assert {f["code"] for f in known} >= {"duplicate_index", "invalid_index"}
    comparison = document["baseline"]
    assert comparison["file"] == str(path)
    assert comparison["known"] == len(known) and comparison["new"] == 1
    assert [e["object"] for e in comparison["resolved"]] == ["baseline_gone"]
    assert comparison["not_checked"] == []

    text, err, code = dbreport(*INDEXES, "--baseline", str(path))
    assert code == 0, err
    assert (
        f"{len(known)} known findings from baseline {path} hidden; 1 new; 1 resolved"
        in text
    )
    assert "  resolved: unused_index baseline_gone (Unused index baseline_gone" in text
    assert "baseline_new_invalid" in text
    assert "volume_title_b" not in text  # known: hidden
    assert "== Findings: 1 errors, 0 warnings, 0 info" in text

    everything, _, _ = dbreport(*INDEXES, "--baseline", str(path), "--all")
    assert "volume_title_b" in everything
    assert "(known: in the baseline)" in everything


def test_fail_on_ignores_known_findings(gone_index, new_problem, tmp_path):
    path = tmp_path / "baseline.json"
    dbreport(*INDEXES, "--write-baseline", str(path))
    # A team adopting --fail-on warning on an existing database: green at once.
    _, message, code = dbreport(
        *INDEXES, "--baseline", str(path), "--fail-on", "warning"
    )
    assert code == 0, message
    _, message, code = dbreport(*INDEXES, "--fail-on", "warning")
    assert code == 1 and "duplicate_index" in message
    text, _, _ = dbreport(*INDEXES, "--baseline", str(path))
    assert text.rstrip().endswith("No new findings.")

    new_problem()
    _, message, code = dbreport(
        *INDEXES, "--baseline", str(path), "--fail-on", "warning"
    )
    assert code == 1
    assert "1 new finding(s) at warning or worse: invalid_index" in message
    _, message, code = dbreport(*INDEXES, "--baseline", str(path), "--fail-on", "error")
    assert code == 1 and "invalid_index" in message

    # --baseline and --write-baseline on one file: compare, then accept today's state.
    out, err, code = dbreport(
        *INDEXES, "--baseline", str(path), "--write-baseline", str(path)
    )
    assert code == 0, err
    assert "1 new" in out
    _, message, code = dbreport(
        *INDEXES, "--baseline", str(path), "--fail-on", "warning"
    )
    assert code == 0, message


def test_a_check_that_could_not_run_is_never_baselined_away(
    reportapp,
    locked_volume,
    dbtuning,
    tmp_path,
):
    path = tmp_path / "baseline.json"
    # Written while the lock is held: the gap is not recorded as known...
    dbtuning(REPORT_LOCK_TIMEOUT="50ms")
    _, err, code = call_and_capture("--write-baseline", str(path))
    assert code == 0
    assert "check(s) incomplete" in err
    assert not any(e["code"] == "check_incomplete" for e in read(path)["findings"])
    # ...nor hidden by an entry someone wrote by hand.
    document = read(path)
    document["findings"].append(
        {"code": "unused_index", "object": "reportapp_volume_pages_9a5ab7ca"}
    )
    document["findings"].append(
        {"code": "check_incomplete", "object": "check:index_inventory"}
    )
    path.write_text(json.dumps(document), encoding="utf-8")

    report = report_json(*INDEXES, "--baseline", str(path))
    gap = next(f for f in report["findings"] if f["code"] == "check_incomplete")
    assert gap["baseline"] is False
    # The indexes could not be read: their entries are not resolved, only unchecked.
    assert report["baseline"]["resolved"] == []
    assert "reportapp_volume_pages_9a5ab7ca" in {
        e["object"] for e in report["baseline"]["not_checked"]
    }
    _, message, code = dbreport(
        *INDEXES, "--baseline", str(path), "--fail-on", "warning"
    )
    assert code == 1 and "check(s) incomplete" in message
    _, message, code = dbreport(
        *INDEXES, "--baseline", str(path), "--fail-on", "warning", "--allow-partial"
    )
    assert code == 0, message
    text, _, _ = dbreport(*INDEXES, "--baseline", str(path))
    assert "not checked (section not run, or a check incomplete)" in text


def test_no_baseline_is_written_when_an_alias_was_unreachable(reportapp, tmp_path):
    path = tmp_path / "baseline.json"
    err = StringIO()
    with (
        extra_alias("down", HOST="127.0.0.1", PORT="1"),
        pytest.raises(CommandError) as caught,
    ):
        call_command(
            "dbreport",
            "--database",
            "default",
            "--database",
            "down",
            "--section",
            "indexes",
            "--write-baseline",
            str(path),
            stdout=StringIO(),
            stderr=err,
        )
    assert caught.value.returncode == 2
    assert f"baseline {path} not written: down unreachable" in err.getvalue()
    assert not path.exists()


def call_and_capture(*args: str) -> tuple[str, str, int]:
    out, err = StringIO(), StringIO()
    try:
        call_command("dbreport", *INDEXES, *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), str(exc), exc.returncode
    return out.getvalue(), err.getvalue(), 0


def test_entries_of_sections_not_run_are_not_resolved(reportapp, tmp_path):
    path = tmp_path / "baseline.json"
    dbreport(
        "--database",
        "default",
        "--section",
        "indexes,tables",
        "--write-baseline",
        str(path),
    )
    assert {e["section"] for e in read(path)["findings"]} >= {"indexes", "tables"}
    document = report_json(*INDEXES, "--baseline", str(path))
    assert document["baseline"]["resolved"] == []
    assert {e["section"] for e in document["baseline"]["not_checked"]} == {"tables"}


def test_hostile_names_round_trip(reportapp, tmp_path):
    schema, table = 'Base Line "Q"; x', "Tâble ünï"
    index = 'idx "quoted"; DROP TABLE x; -- ☃'
    q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731
    with admin_connection() as conn:
        conn.execute(f"CREATE SCHEMA {q(schema)}")
        conn.execute(f"CREATE TABLE {q(schema)}.{q(table)} (id int, Note text)")
        conn.execute(f"CREATE INDEX {q(index)} ON {q(schema)}.{q(table)} (note)")
    try:
        path = tmp_path / "hostile.json"
        dbreport(*INDEXES, "--write-baseline", str(path))
        objects = {e["object"] for e in read(path)["findings"]}
        hostile = next(name for name in objects if "☃" in name)
        assert hostile == f"{q(schema)}.{q(index)}"
        document = report_json(*INDEXES, "--baseline", str(path))
        mine = [f for f in document["findings"] if f["object"] == hostile]
        assert mine and all(f["baseline"] for f in mine)
        assert document["baseline"]["new"] == 0
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP SCHEMA {q(schema)} CASCADE")


# -- errors --------------------------------------------------------------------------------

BAD_FILES = [
    (b"{not json", "not valid JSON"),
    (b"[]", "not a dbreport baseline (expected a JSON object)"),
    (b'{"version": 2, "findings": []}', "baseline version 2 is not supported"),
    (b'{"version": true, "findings": []}', "baseline version True is not supported"),
    (b'{"findings": []}', "baseline version None is not supported"),
    (b'{"version": 1}', "'findings' must be a list"),
    (b'{"version": 1, "findings": [{"code": 1, "object": "x"}]}', "finding 1 must be"),
    (
        b'{"version": 1, "findings": [{"code": "a", "object": "x", "label": 3}]}',
        "finding 1",
    ),
    (b"\xff\xfe", "not UTF-8 text"),
]


@pytest.mark.parametrize(("content", "problem"), BAD_FILES)
def test_an_invalid_baseline_file_is_a_one_line_error_naming_it(
    tmp_path, content, problem
):
    path = tmp_path / "bad baseline.json"
    path.write_bytes(content)
    out, message, code = dbreport(*INDEXES, "--baseline", str(path))
    assert code == 1
    assert message.startswith(f"--baseline {path}: ")
    assert problem in message
    assert "\n" not in message
    assert out == ""


def test_a_missing_or_unreadable_baseline_file(tmp_path):
    missing = tmp_path / "nowhere.json"
    _, message, code = dbreport(*INDEXES, "--baseline", str(missing))
    assert code == 1
    assert (
        message
        == f"--baseline {missing}: no such file (create it with --write-baseline)"
    )
    _, message, code = dbreport(*INDEXES, "--baseline", str(tmp_path))
    assert code == 1 and message == f"--baseline {tmp_path}: is a directory"
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.json"
        locked.write_text('{"version": 1, "findings": []}')
        locked.chmod(0)
        _, message, code = dbreport(*INDEXES, "--baseline", str(locked))
        assert code == 1 and "cannot read it (Permission denied)" in message


def test_write_baseline_is_checked_before_the_report_runs(tmp_path):
    target = tmp_path / "missing-dir" / "baseline.json"
    out, message, code = dbreport(*INDEXES, "--write-baseline", str(target))
    assert code == 1
    assert message.startswith(f"--write-baseline {target}: ")
    assert "does not exist" in message
    assert out == ""  # refused before the report ran


@pytest.mark.parametrize("option", ["baseline", "write_baseline"])
def test_keyword_options_must_be_paths(option):
    with pytest.raises(
        CommandError, match=f"--{option.replace('_', '-')} must be a path"
    ):
        call_command("dbreport", **{option: 3})


def test_keyword_options_take_path_objects(reportapp, tmp_path):
    path = tmp_path / "keyword.json"
    options = {"stdout": StringIO(), "stderr": StringIO()}
    call_command("dbreport", *INDEXES, write_baseline=path, **options)
    out = StringIO()
    call_command("dbreport", *INDEXES, baseline=path, stdout=out, stderr=StringIO())
    assert f"from baseline {path} hidden; 0 new; 0 resolved" in out.getvalue()


def test_python_api(gone_index, tmp_path):
    path = tmp_path / "api.json"
    report = run_report(["default"], sections=["indexes"])
    count = write_baseline(report, str(path))
    assert count == len(read(path)["findings"]) > 0
    baseline = load_baseline(path)
    again = run_report(["default"], sections=["indexes"], baseline=baseline)
    assert again.baseline is not None and again.baseline.new == 0
    assert all(f.baseline for f in again.findings if key(f) is not None)
    assert again.failures("warning", allow_partial=True) == ([], [])
    with pytest.raises(BaselineError, match="no such file"):
        run_report(["default"], baseline=str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match="--write-baseline"):
        write_baseline(report, str(tmp_path / "no" / "dir.json"))


# -- the file format, as a property --------------------------------------------------------

CODES = [
    "unused_index",
    "duplicate_index",
    "slow_query",
    "xid_wraparound",
    "low_cache_hit_ratio",
    "long_running_query",
    "check_incomplete",
    "a_future_code",
]
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24
) | st.sampled_from(['"Q"."x y"', "Tâble; DROP", "pid:12", "database:shop", "ünï ☃"])


def finding(code: str, name: str, size: int, alias: str) -> Finding:
    return Finding(
        database=alias,
        severity="warning",
        code=code,
        title=f"{code} {name} {size} bytes",
        detail=f"{size} bytes",
        hint="",
        object=name,
        # The kind (table or index cache) is part of low_cache_hit_ratio's identity.
        data={"size_bytes": size, "kind": "index" if len(name) % 2 else "table"},
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(CODES),
            NAMES,
            st.integers(0, 2**40),
            st.sampled_from(["default", "replica"]),
        ),
        max_size=25,
    ),
    st.randoms(use_true_random=False),
    st.integers(1, 10**6),
)
def test_a_baseline_round_trips_whatever_the_order_sizes_and_names(items, rnd, bump):
    findings = [finding(*item) for item in items]
    text = dumps(entries_of(findings))
    assert text.endswith("\n") and json.loads(text)["version"] == 1
    loaded = loads(text)
    assert set(loaded.entries) == {key(f) for f in findings if key(f) is not None}
    # Another run: other order, other sizes, the other alias. Same file, byte for byte
    # (a label may change, the identities never).
    later = [finding(c, n, s + bump, "default") for c, n, s, _ in items]
    rnd.shuffle(later)
    assert set(loads(dumps(entries_of(later))).entries) == set(loaded.entries)
    # Transient findings and check_incomplete never enter a baseline.
    assert not {k.code for k in loaded.entries} & {
        "long_running_query",
        "check_incomplete",
    }


def test_round_trip_through_a_file(tmp_path):
    report = Report(
        generated_at=datetime.now(UTC),
        sections=("indexes",),
        databases={},
        findings=[finding("unused_index", 'i "q" ☃', 10, "default")],
    )
    path = tmp_path / "b.json"
    assert write_baseline(report, str(path)) == 1
    assert list(load_baseline(path).entries) == [key(report.findings[0])]
    assert "☃" in path.read_text(encoding="utf-8")  # readable, not \\u escapes
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
