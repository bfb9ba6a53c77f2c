"""System checks for query tracking: dbtuning.E030-E039 / W030-W039."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_dbtuning.queries.checks import check_query_tracking

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"


def ids(messages):
    return [message.id for message in messages]


def test_middleware_first_is_fine(settings):
    settings.DEBUG = True
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
    assert check_query_tracking() == []


def test_missing_middleware_warns_in_development(settings):
    settings.DEBUG = True
    (message,) = check_query_tracking()
    assert message.id == "dbtuning.W030"
    assert MIDDLEWARE in message.hint
    settings.DEBUG = False
    assert check_query_tracking() == []


def test_middleware_after_query_running_middleware_warns(settings):
    settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        MIDDLEWARE,
    ]
    (message,) = check_query_tracking()
    assert message.id == "dbtuning.W031"
    assert "SessionMiddleware" in message.msg
    assert "SecurityMiddleware" not in message.msg


def test_middleware_listed_twice_is_an_error(settings):
    settings.MIDDLEWARE = [MIDDLEWARE, MIDDLEWARE]
    assert ids(check_query_tracking()) == ["dbtuning.E030"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("testapp.Book", ["dbtuning.E031"]),
        ({}, ["dbtuning.E031"]),
        ({"modle": "testapp.Book"}, ["dbtuning.E032"]),
        ({"model": 3}, ["dbtuning.E033"]),
        ({"model": "testapp.Nope"}, ["dbtuning.E034"]),
        ({"model": "nope"}, ["dbtuning.E034"]),
        ({"model": "testapp.Book", "field": "autor"}, ["dbtuning.E035"]),
        ({"model": "testapp.Book", "field": "author"}, []),
        ({"model": "testapp.Author", "field": "books"}, []),
        ({"model": "testapp.*", "field": "whatever"}, []),
        ({"fingerprint": "SELECT *"}, []),
        ({"view": "shop:*", "callsite": "app/views.py:*"}, []),
    ],
)
def test_allow_list_validation(settings, dbtuning, entry, expected):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ALLOW_N_PLUS_ONE=[entry])
    messages = check_query_tracking()
    assert ids(messages) == expected
    for message in messages:
        assert "DBTUNING['ALLOW_N_PLUS_ONE'][0]" in message.msg
        assert message.hint


def test_allow_list_field_suggestion(settings, dbtuning):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ALLOW_N_PLUS_ONE=[{"model": "testapp.Book", "field": "autor"}])
    (message,) = check_query_tracking()
    assert message.hint == "Did you mean 'author'?"


def test_unknown_ignored_alias_warns(settings, dbtuning):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(IGNORE_ALIASES=["replica"])
    (message,) = check_query_tracking()
    assert message.id == "dbtuning.W032"
    assert "'replica'" in message.msg


def test_registered_with_django(settings, dbtuning):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ALLOW_N_PLUS_ONE=[{"model": "testapp.Nope"}])
    # Only this app's models: on Django 6.1 the test models' GeneratedField check asks
    # every database its server version, which a test without database access may not.
    with pytest.raises(SystemCheckError, match=r"dbtuning\.E034"):
        call_command("check", "django_dbtuning")
