"""An alias longer than a snapshot's alias column is a system check error, not a failed
``dbreport --save`` at 3 a.m."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.checks import run_checks


def errors(found: list) -> list:
    return [message for message in found if message.id == "dbtuning.E058"]


def test_a_too_long_alias_is_named_with_its_length(monkeypatch, db):
    alias = "replica_" + "é" * 93  # 101 characters
    monkeypatch.setitem(settings.DATABASES, alias, dict(settings.DATABASES["default"]))
    [error] = errors(run_checks())
    assert "is 101 characters long, and snapshots store at most 100" in error.msg
    assert error.hint == "Use a shorter alias in DATABASES."


def test_aliases_up_to_the_limit_pass(monkeypatch, db):
    monkeypatch.setitem(
        settings.DATABASES, "r" * 100, dict(settings.DATABASES["default"])
    )
    assert errors(run_checks()) == []


def test_save_refuses_it_before_writing(db):
    from django_dbtuning.models import Snapshot
    from django_dbtuning.report.history import HistoryError, save_states

    with pytest.raises(HistoryError, match="is 101 characters long"):
        save_states({"a" * 101: None})
    assert not Snapshot.objects.exists()
