"""A failure on the alias that stores snapshots never shows its password: the server echoes
the database name, and a password can be that name."""

from __future__ import annotations

import pytest
from django.db import connections

from django_dbtuning.models import Snapshot
from tests.report.test_report import dbreport

pytestmark = [
    pytest.mark.urls("tests.dashboard.urls"),
    # Not inside the test's transaction: 'other' reconnects with the settings below.
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
]

SECRET = "Hunter2-vault-pw"


class VaultRouter:
    def db_for_write(self, model, **hints):
        return "other" if model is Snapshot else None

    def db_for_read(self, model, **hints):
        return "other" if model is Snapshot else None


@pytest.fixture
def vault(settings, monkeypatch):
    """Snapshots routed to 'other', whose database (named like its password) does not
    exist on the server: the server's error line says the name."""
    settings.DATABASE_ROUTERS = [VaultRouter()]
    other = connections["other"]
    other.close()
    # A copy: the test mirror shares its settings dict with 'default'.
    monkeypatch.setattr(
        other,
        "settings_dict",
        {**other.settings_dict, "NAME": SECRET, "PASSWORD": SECRET},
    )
    yield
    other.close()


@pytest.mark.parametrize("args", [("--since", "7d"), ("--save",)])
def test_dbreport_history_errors_hide_the_password(vault, args):
    out, err, code = dbreport(*args, "--section", "tables")
    assert code == 1
    assert "on database alias 'other'" in err
    assert "***" in err  # the server did name the database: redacted
    assert SECRET not in out + err


def test_dashboard_history_hides_the_password(vault, staff_client):
    response = staff_client.get("/dbtuning/history/")
    page = response.content.decode()
    assert "cannot read" in page and "***" in page
    assert SECRET not in page
