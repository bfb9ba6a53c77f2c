"""Less noise, same truth: unused indexes wait for old enough statistics, and findings on
third-party apps' tables are one line per code in text (all of them in JSON)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from django_dbtuning.report.checks import check_dbreport_settings
from django_dbtuning.report.humanize import human_duration
from django_dbtuning.report.ownership import third_party_app
from tests.report.test_report import dbreport, findings, report_json

pytestmark = pytest.mark.django_db

INDEXES = ("--database", "default", "--section", "indexes")
YOUNG = re.compile(
    r"statistics too young to judge unused indexes: [0-9.]+ (ms|s|min|h) of 7 d"
)


def ids(messages) -> list[str]:
    return [m.id for m in messages]


# -- young statistics ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["7d", timedelta(days=7), "168h"])
def test_young_statistics_hold_unused_indexes_back(reportapp, settings, value):
    settings.DBTUNING = {"UNUSED_INDEX_MIN_AGE": value}
    document = report_json(*INDEXES)
    assert findings(document, "unused_index") == []
    [young] = findings(document, "stats_too_young")
    assert young["severity"] == "info"
    assert YOUNG.fullmatch(young["title"]), young["title"]
    assert young["data"]["candidates"] >= 1
    assert young["data"]["min_age_seconds"] == 7 * 86_400
    assert "UNUSED_INDEX_MIN_AGE" in young["hint"]
    assert re.search(
        r"run dbreport again after \d{4}-\d\d-\d\d \d\d:\d\d UTC", young["hint"]
    )
    ahead = datetime.fromisoformat(young["data"]["judged_after"]) - datetime.now(UTC)
    assert timedelta(days=6) < ahead <= timedelta(days=7)
    # The other index findings stay: only the judgement that needs time waits.
    assert findings(document, "duplicate_index")
    assert document["databases"]["default"]["indexes"]["unused_count"] == 0

    text, _, code = dbreport(*INDEXES)
    assert code == 0
    assert YOUNG.search(text)
    assert "Unused index" not in text


def test_old_enough_statistics_are_judged(reportapp, settings):
    settings.DBTUNING = {"UNUSED_INDEX_MIN_AGE": "0s"}
    document = report_json(*INDEXES)
    assert findings(document, "stats_too_young") == []
    assert any("pages" in f["object"] for f in findings(document, "unused_index"))


def test_the_deprecated_threshold_is_an_alias(reportapp, settings):
    settings.DBTUNING = {"REPORT_THRESHOLDS": {"min_stats_age_days": 0}}
    document = report_json(*INDEXES)
    assert findings(document, "unused_index")
    messages = check_dbreport_settings()
    assert ids(messages) == ["dbtuning.W055"]
    assert "UNUSED_INDEX_MIN_AGE = '0d'" in messages[0].msg

    settings.DBTUNING = {"REPORT_THRESHOLDS": {"min_stats_age_days": 7}}
    assert findings(report_json(*INDEXES), "stats_too_young")

    # The setting wins, and the warning says the old name is ignored.
    settings.DBTUNING = {
        "REPORT_THRESHOLDS": {"min_stats_age_days": 7},
        "UNUSED_INDEX_MIN_AGE": "0s",
    }
    assert findings(report_json(*INDEXES), "unused_index")
    [message] = check_dbreport_settings()
    assert message.id == "dbtuning.W055" and "ignored" in message.msg


@pytest.mark.parametrize(
    "value", ["7", "7 parsecs", "-1d", "", "d", timedelta(days=-1), 7, 7.5, None, True]
)
def test_a_wrong_min_age_is_refused_naming_the_setting(settings, value):
    settings.DBTUNING = {"UNUSED_INDEX_MIN_AGE": value}
    out, message, code = dbreport(*INDEXES)
    assert code == 1
    assert message.startswith("DBTUNING['UNUSED_INDEX_MIN_AGE'] is ")
    assert "\n" not in message and out == ""
    checks = ids(check_dbreport_settings())
    # A value of the wrong type is dbtuning.E002's; a str or timedelta is checked here.
    assert checks == (["dbtuning.E055"] if isinstance(value, str | timedelta) else [])


def test_durations_read_well():
    assert human_duration(2.6) == "2.6 s"
    assert human_duration(7 * 86_400) == "7 d"
    assert human_duration(0.0004) == "0.4 ms"
    assert human_duration(90) == "1.5 min"
    assert human_duration(5.25 * 3600) == "5.2 h"
    assert human_duration(0) == "0 s"


# -- third-party apps ----------------------------------------------------------------------


def test_third_party_findings_are_flagged_in_json(reportapp):
    document = report_json(*INDEXES)
    auth = [f for f in document["findings"] if (f["model"] or "").startswith("auth.")]
    assert auth, "the test database's auth tables have unused indexes"
    assert all(f["third_party"] for f in auth)
    own = [
        f for f in document["findings"] if (f["model"] or "").startswith("reportapp.")
    ]
    assert own and not any(f["third_party"] for f in own)
    assert all(f["section"] == "indexes" for f in own)


def test_third_party_findings_are_one_line_per_code_in_text(reportapp):
    document = report_json(*INDEXES, "--top", "0")
    third = [f for f in document["findings"] if f["third_party"]]
    by_code: dict[str, list[dict]] = {}
    for finding in third:
        by_code.setdefault(finding["code"], []).append(finding)
    text, _, code = dbreport(*INDEXES, "--top", "0")
    assert code == 0
    for found_code, found in by_code.items():
        if len(found) < 2:
            continue
        lines = [
            line
            for line in text.splitlines()
            if f"{found_code} · default · {len(found)} findings on tables of third-party "
            "apps (" in line
        ]
        assert len(lines) == 1, found_code
        assert "--all shows each" in lines[0]
        for finding in found:
            assert finding["title"] not in text
    # Own findings are listed one by one, as before.
    assert "Duplicate index volume_title_b on reportapp_volume" in text

    everything, _, _ = dbreport(*INDEXES, "--top", "0", "--all")
    for finding in third:
        assert finding["title"] in everything
    assert "findings on tables of third-party apps" not in everything


# -- which apps are the project's own ------------------------------------------------------


def app(name: str, path: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, path=path)


@pytest.mark.parametrize(
    ("config", "base", "third_party"),
    [
        (app("django.contrib.auth", "/src/django/contrib/auth"), None, True),
        (app("allauth", "/venv/lib/python3.13/site-packages/allauth"), None, True),
        (app("shop", "/srv/project/shop"), None, False),
        (app("shop", "/srv/project/shop"), "/srv/project", False),
        # A monorepo's sibling package, an editable install: not installed, so own.
        (app("billing", "/srv/libs/billing"), "/srv/project", False),
        # A virtualenv inside the project holds other people's code.
        (
            app("allauth", "/srv/project/.venv/lib/python3.13/site-packages/allauth"),
            "/srv/project",
            True,
        ),
        # The project itself installed into site-packages (pip install . in an image).
        (
            app("shop", "/usr/lib/python3/dist-packages/mysite/shop"),
            "/usr/lib/python3/dist-packages/mysite",
            False,
        ),
        (
            app("debug_toolbar", "/usr/lib/python3/dist-packages/debug_toolbar"),
            "/usr/lib/python3/dist-packages/mysite",
            True,
        ),
        (app("shop", "/srv/project/shop"), Path("/srv/project"), False),
    ],
)
def test_own_apps_are_known_by_where_they_live(settings, config, base, third_party):
    if base is None:
        if hasattr(settings, "BASE_DIR"):
            del settings.BASE_DIR
    else:
        settings.BASE_DIR = base
    assert third_party_app(config) is third_party
