from __future__ import annotations

import pytest
from django.test import override_settings

from django_dbtuning.conf import SETTINGS, conf


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_defaults_when_unset(settings, name):
    del settings.DBTUNING
    assert conf.get(name) == SETTINGS[name].default


def test_override_settings_is_seen_without_caching():
    with override_settings(DBTUNING={"N_PLUS_ONE_THRESHOLD": 7}):
        assert conf.N_PLUS_ONE_THRESHOLD == 7
    assert conf.N_PLUS_ONE_THRESHOLD == 3


def test_settings_fixture_is_seen(dbtuning):
    dbtuning(QUERY_BUDGET=12, ON_N_PLUS_ONE="raise")
    assert conf.QUERY_BUDGET == 12
    assert conf.ON_N_PLUS_ONE == "raise"
    assert conf.ON_QUERY_BUDGET == "raise"


@pytest.mark.parametrize(
    ("debug", "expected"),
    [(True, "warn"), (False, "log")],
)
def test_on_n_plus_one_follows_debug_by_default(settings, debug, expected):
    settings.DEBUG = debug
    settings.DBTUNING = {}
    assert expected == conf.ON_N_PLUS_ONE


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("N_PLUS_ONE_THRESHOLD", "3"),
        ("N_PLUS_ONE_THRESHOLD", True),
        ("N_PLUS_ONE_THRESHOLD", 1),
        ("ON_N_PLUS_ONE", "explode"),
        ("QUERY_BUDGET", -1),
        ("RESPONSE_HEADERS", "yes"),
    ],
)
def test_wrong_values_fall_back_to_the_default_and_never_raise(dbtuning, name, bad):
    dbtuning(**{name: bad})
    assert conf.get(name) == SETTINGS[name].default


def test_a_dbtuning_that_is_not_a_dict_is_ignored(settings):
    settings.DBTUNING = ["N_PLUS_ONE_THRESHOLD", 5]
    assert conf.N_PLUS_ONE_THRESHOLD == 3
