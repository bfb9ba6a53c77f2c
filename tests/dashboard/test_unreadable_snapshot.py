"""One unreadable Snapshot row between readable ones: the history and statement pages
leave it out with a note naming it and still draw the readable snapshots."""

from __future__ import annotations

import html

import pytest

from django_dbtuning.models import Snapshot
from tests.dashboard.conftest import TABLE, insert
from tests.dashboard.test_statement_page import queryid_of, run
from tests.report.test_report import dbreport

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]


@pytest.fixture
def corrupt_middle(planted, db) -> tuple[int, int]:
    """Three snapshots of 'default'; the middle one's document is garbage."""
    for rows in (0, 1000, 1000):
        if rows:
            insert(planted, rows)
        run(planted, 1)
        out, err, code = dbreport("--save", "--section", "tables,indexes,statements")
        assert code == 0, err
    middle = Snapshot.objects.filter(alias="default").order_by("taken_at")[1]
    Snapshot.objects.filter(pk=middle.pk).update(data={"garbage": [1, 2, 3]})
    return middle.pk, queryid_of(planted)


def note(pk: int) -> str:
    return f"snapshot #{pk} of alias &#x27;default&#x27; cannot be read ("


def test_history_leaves_the_row_out_and_keeps_the_charts(corrupt_middle, staff_client):
    pk, _ = corrupt_middle
    response = staff_client.get("/dbtuning/history/")
    assert response.status_code == 200
    page = response.content.decode()
    assert note(pk) in page
    assert "left out of the charts" in page
    assert "delete that row" not in page
    assert "2 snapshots" in page
    assert "<polyline" in page
    assert html.escape(TABLE) in page


def test_statement_page_leaves_the_row_out(corrupt_middle, staff_client):
    pk, queryid = corrupt_middle
    response = staff_client.get(f"/dbtuning/statements/{queryid}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert note(pk) in page
    assert "In 2 of the newest 2 snapshots" in page
