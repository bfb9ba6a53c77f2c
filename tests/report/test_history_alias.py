"""An alias longer than a snapshot's alias column is a system check error, not a failed
``dbreport --save`` at 3 a.m."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.checks import registry

from django_dbtuning.report.history import check_history_aliases


def errors() -> list:
    # The check itself: run_checks() would also run model checks that open every alias.
    assert check_history_aliases in registry.registry.get_checks()
    found = check_history_aliases()
    return [message for message in found if message.id == "dbtuning.E058"]


def test_a_too_long_alias_is_named_with_its_length(monkeypatch):
    alias = "replica_" + "é" * 93  # 101 characters
    monkeypatch.setitem(settings.DATABASES, alias, dict(settings.DATABASES["default"]))
    [error] = errors()
    assert "is 101 characters long, and snapshots store at most 100" in error.msg
    assert error.hint == "Use a shorter alias in DATABASES."


def test_aliases_up_to_the_limit_pass(monkeypatch):
    monkeypatch.setitem(
        settings.DATABASES, "r" * 100, dict(settings.DATABASES["default"])
    )
    assert errors() == []


def test_save_refuses_it_before_writing(db):
    from django_dbtuning.models import Snapshot
    from django_dbtuning.report.history import HistoryError, save_states

    with pytest.raises(HistoryError, match="is 101 characters long"):
        save_states({"a" * 101: None})
    assert not Snapshot.objects.exists()
