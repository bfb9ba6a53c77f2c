"""Adversarial pass (session 20) on dbreport's file options: --output never overwrites
the baseline it reads or writes."""

from __future__ import annotations

import os

import pytest

from tests.report.test_report import dbreport

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
