"""Adversarial pass (session 20) on dbreport's file options: --output never overwrites
the baseline it reads or writes."""

from __future__ import annotations

import json
import os

import pytest

from tests.report.test_report import admin_connection, dbreport, extra_alias

pytestmark = pytest.mark.django_db

ONLY = ("--database", "default", "--section", "settings")


@pytest.mark.parametrize("flag", ["--baseline", "--write-baseline"])
@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_output_never_names_the_baseline_file(tmp_path, flag, spelling):
    baseline = tmp_path / "baseline.json"
    out, err, code = dbreport(*ONLY, "--write-baseline", str(baseline))
    assert code == 0, err
    before = baseline.read_bytes()
    output = {
        "same": baseline,
        "dotted": tmp_path / "." / "baseline.json",
        "symlink": tmp_path / "link.json",
    }[spelling]
    if spelling == "symlink":
        output.symlink_to(baseline)
    out, err, code = dbreport(*ONLY, flag, str(baseline), "--output", str(output))
    # Before: the report replaced the baseline (--baseline), or the baseline the report.
    assert code == 1
    assert "--output" in err and flag in err and "same file" in err
    assert baseline.read_bytes() == before


def test_devices_and_other_files_are_no_collision(tmp_path):
    baseline = tmp_path / "baseline.json"
    out, err, code = dbreport(
        *ONLY, "--write-baseline", os.devnull, "--output", os.devnull
    )
    assert code == 0, err
    out, err, code = dbreport(
        *ONLY, "--write-baseline", str(baseline), "--output", str(tmp_path / "r.txt")
    )
    assert code == 0, err
    assert baseline.exists() and (tmp_path / "r.txt").exists()


def test_a_short_retention_never_deletes_the_snapshot_just_saved(dbtuning):
    from django_dbtuning.models import Snapshot

    # "Keep only the newest": a retention shorter than the report's own run.
    dbtuning(HISTORY_RETENTION="1ms")
    for _ in range(2):
        out, err, code = dbreport(*ONLY, "--save")
        assert code == 0, err
    # Before: each run saved its snapshot and deleted it in the same transaction.
    assert Snapshot.objects.filter(alias="default").count() == 1
    assert "saved snapshot #" in err and "deleted 1 snapshot(s)" in err


def test_an_entry_is_resolved_only_when_every_database_was_looked_at(
    dbtuning, tmp_path
):
    # One file for two databases (the docs advise one per database; nothing stops it).
    # The index is in "default", whose index checks time out behind a migration's lock;
    # the other database was read fully. Nothing says the index is gone.
    dbtuning(REPORT_LOCK_TIMEOUT="200ms")
    path = tmp_path / "baseline.json"
    entry = {"code": "unused_index", "object": "adv_gone_idx", "section": "indexes"}
    path.write_text(json.dumps({"version": 1, "findings": [entry]}))
    with extra_alias("adv_other", NAME="postgres"), admin_connection() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE reportapp_volume IN ACCESS EXCLUSIVE MODE")
        try:
            out, err, code = dbreport(
                "--format",
                "json",
                "--database",
                "default",
                "--database",
                "adv_other",
                "--section",
                "indexes",
                "--baseline",
                str(path),
            )
        finally:
            conn.rollback()
    assert code == 0, err
    document = json.loads(out)
    assert document["databases"]["default"]["checks"]["index_inventory"]["status"] == (
        "timeout"
    )
    assert document["baseline"]["resolved"] == []
    assert [e["object"] for e in document["baseline"]["not_checked"]] == [
        "adv_gone_idx"
    ]


def test_rewriting_a_baseline_keeps_the_entries_it_could_not_check(tmp_path):
    path = tmp_path / "baseline.json"
    entry = {
        "code": "unused_index",
        "object": "adv_kept_idx",
        "section": "indexes",
        "label": "kept",
    }
    path.write_text(json.dumps({"version": 1, "findings": [entry]}))
    out, err, code = dbreport(
        *ONLY, "--baseline", str(path), "--write-baseline", str(path)
    )
    assert code == 0, err
    # The indexes section did not run: not checked, so not resolved, so still known.
    # Before: dropped, and the next full run failed on it as new.
    written = json.loads(path.read_text())["findings"]
    assert entry in written
