from __future__ import annotations

import dataclasses

import pytest
from django.test import override_settings

from django_dbtuning.conf import SETTINGS, DbTuningSettings, get_settings


def test_the_snapshot_has_one_field_per_registered_setting():
    fields = {field.name for field in dataclasses.fields(DbTuningSettings)}
    assert fields == {name.lower() for name in SETTINGS}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_defaults_when_unset(settings, name):
    del settings.DBTUNING
    value = getattr(get_settings(), name.lower())
    assert value == SETTINGS[name].default


def test_the_snapshot_is_frozen_and_cached():
    snapshot = get_settings()
    assert get_settings() is snapshot
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.n_plus_one_threshold = 9  # type: ignore[misc]


def test_override_settings_rebuilds_the_snapshot():
    with override_settings(DBTUNING={"N_PLUS_ONE_THRESHOLD": 7}):
        assert get_settings().n_plus_one_threshold == 7
    assert get_settings().n_plus_one_threshold == 3


def test_settings_fixture_is_seen(dbtuning):
    dbtuning(QUERY_BUDGET=12, ON_N_PLUS_ONE="raise")
    snapshot = get_settings()
    assert snapshot.query_budget == 12
    assert snapshot.n_plus_one_reaction == "raise"
    assert snapshot.query_budget_reaction == "raise"


@pytest.mark.parametrize(
    ("debug", "expected"),
    [(True, "warn"), (False, "log")],
)
def test_on_n_plus_one_follows_debug_by_default(settings, debug, expected):
    settings.DEBUG = debug
    settings.DBTUNING = {}
    assert get_settings().n_plus_one_reaction == expected


def test_debug_is_read_when_the_reaction_is_asked_for(settings):
    # Django's test runner sets DEBUG without setting_changed; the snapshot must not
    # have frozen the DEBUG it saw first.
    settings.DBTUNING = {}
    snapshot = get_settings()
    settings.DEBUG = True
    assert snapshot.n_plus_one_reaction == "warn"
    settings.DEBUG = False
    assert snapshot.n_plus_one_reaction == "log"


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("N_PLUS_ONE_THRESHOLD", "3"),
        ("N_PLUS_ONE_THRESHOLD", True),
        ("N_PLUS_ONE_THRESHOLD", 1),
        ("ON_N_PLUS_ONE", "explode"),
        ("QUERY_BUDGET", -1),
        ("RESPONSE_HEADERS", "yes"),
        ("WORKER_TIMEOUT", float("nan")),
    ],
)
def test_wrong_values_fall_back_to_the_default_and_never_raise(dbtuning, name, bad):
    dbtuning(**{name: bad})
    assert getattr(get_settings(), name.lower()) == SETTINGS[name].default


def test_numbers_of_seconds_are_floats(dbtuning):
    dbtuning(WORKER_TIMEOUT=45, REPORT_METRICS_TTL=0)
    snapshot = get_settings()
    assert snapshot.worker_timeout == 45.0 and isinstance(
        snapshot.worker_timeout, float
    )
    assert snapshot.report_metrics_ttl == 0.0


def test_a_dbtuning_that_is_not_a_dict_is_ignored(settings):
    settings.DBTUNING = ["N_PLUS_ONE_THRESHOLD", 5]
    assert get_settings().n_plus_one_threshold == 3
