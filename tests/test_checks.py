from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_dbtuning.checks import check_dbtuning_settings


def ids(messages):
    return [message.id for message in messages]


def test_no_dbtuning_setting_is_fine(settings):
    del settings.DBTUNING
    assert check_dbtuning_settings() == []


def test_valid_settings_pass(dbtuning):
    dbtuning(N_PLUS_ONE_THRESHOLD=5, ON_N_PLUS_ONE="raise", QUERY_BUDGET=None)
    assert check_dbtuning_settings() == []


def test_not_a_dict(settings):
    settings.DBTUNING = "warn"
    assert ids(check_dbtuning_settings()) == ["dbtuning.E001"]


def test_unknown_key_warns_with_a_suggestion(dbtuning):
    dbtuning(N_PLUS_ONE_TRESHOLD=5)
    (message,) = check_dbtuning_settings()
    assert message.id == "dbtuning.W001"
    assert "N_PLUS_ONE_TRESHOLD" in message.msg
    assert message.hint == "Did you mean 'N_PLUS_ONE_THRESHOLD'?"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("N_PLUS_ONE_THRESHOLD", "3", "int >= 2"),
        ("N_PLUS_ONE_THRESHOLD", 1, "int >= 2"),
        ("ON_N_PLUS_ONE", "explode", "'warn' or 'log' or 'raise' or 'ignore' or None"),
        ("QUERY_BUDGET", 2.5, "int >= 0 or None"),
        ("RESPONSE_HEADERS", 1, "bool"),
    ],
)
def test_wrong_type_or_value_is_an_error_naming_key_value_and_expectation(
    dbtuning, key, value, expected
):
    dbtuning(**{key: value})
    (message,) = check_dbtuning_settings()
    assert message.id == "dbtuning.E002"
    assert message.msg == f"DBTUNING[{key!r}] is {value!r}; expected {expected}."
    assert message.hint


def test_checks_are_registered_with_django(dbtuning):
    dbtuning(ON_N_PLUS_ONE="explode")
    # databases=[]: Django 6.1's GeneratedField check would connect to every alias otherwise.
    assert "dbtuning.E002" in ids(run_checks(databases=[]))
    with pytest.raises(SystemCheckError, match=r"dbtuning\.E002"):
        call_command("check", "django_dbtuning")
