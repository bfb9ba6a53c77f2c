"""System checks for dbreport's settings (dbtuning.E050-E059 / W050-W059)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_dbtuning.report.checks import check_dbreport_settings


def ids(**kwargs):
    return [message.id for message in check_dbreport_settings()]


def test_defaults_are_clean():
    assert ids() == []


def test_unknown_threshold_with_suggestion(dbtuning):
    dbtuning(REPORT_THRESHOLDS={"unused_index_max_scan": 1})
    (message,) = check_dbreport_settings()
    assert message.id == "dbtuning.W050"
    assert "'unused_index_max_scans'" in message.hint


@pytest.mark.parametrize("value", ["10", -1, True, None])
def test_threshold_of_wrong_type_or_range(dbtuning, value):
    dbtuning(REPORT_THRESHOLDS={"dead_tuples_min": value})
    assert ids() == ["dbtuning.E050"]


def test_valid_thresholds_change_the_report(dbtuning):
    from django_dbtuning.report.findings import thresholds

    dbtuning(REPORT_THRESHOLDS={"dead_tuples_min": 5, "slow_query_mean_ms": 2.5})
    assert ids() == []
    from django_dbtuning.conf import get_settings

    merged = thresholds(get_settings().report_thresholds)
    assert merged["dead_tuples_min"] == 5
    assert merged["slow_query_mean_ms"] == 2.5


@pytest.mark.parametrize("key", ["REPORT_STATEMENT_TIMEOUT", "REPORT_LOCK_TIMEOUT"])
def test_unparseable_timeouts(dbtuning, key):
    dbtuning(**{key: "ten seconds"})
    assert ids() == ["dbtuning.E051"]
    dbtuning(**{key: "250ms"})
    assert ids() == []


def test_unknown_metrics_section(dbtuning):
    dbtuning(REPORT_METRICS_SECTIONS=["indexes", "bogus"])
    (message,) = check_dbreport_settings()
    assert message.id == "dbtuning.E052"
    assert "'bogus'" in message.msg


def test_unknown_metrics_alias(dbtuning):
    dbtuning(REPORT_METRICS_ALIASES=["default", "nope"])
    (message,) = check_dbreport_settings()
    assert message.id == "dbtuning.E053"
    assert "'nope'" in message.msg


def test_registered_with_django(dbtuning):
    dbtuning(REPORT_METRICS_SECTIONS=["bogus"])
    with pytest.raises(SystemCheckError, match="dbtuning.E052"):
        call_command("check")
