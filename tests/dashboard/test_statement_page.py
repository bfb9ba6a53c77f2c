"""One statement's page (``statements/<queryid>/``) from a user's side: real snapshots
with a ``pg_stat_statements_reset()`` between them, hostile text, queryids of every
shape, and the dashboard's access rules."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from psycopg import sql

from tests.dashboard.conftest import COLUMN, PASSWORD, SCHEMA, SECRET, TABLE
from tests.report.test_report import dbreport

pytestmark = [pytest.mark.urls("tests.dashboard.urls"), pytest.mark.django_db]

QUERY = sql.SQL("SELECT {} FROM {} WHERE note = '" + SECRET + "'").format(
    sql.Identifier(COLUMN), sql.Identifier(SCHEMA, TABLE)
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def run(conn, times: int) -> None:
    for _ in range(times):
        conn.execute(QUERY)


def save() -> None:
    out, err, code = dbreport("--save", "--section", "statements")
    assert code == 0, err


def queryid_of(conn) -> int:
    row = conn.execute(
        "SELECT queryid FROM pg_stat_statements WHERE query LIKE %s",
        [f'SELECT "{COLUMN}" FROM %'],
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def reset_between(planted, db):
    """Three snapshots: 4 calls between the first two, then a reset and 2 calls."""
    run(planted, 1)
    save()
    run(planted, 4)
    save()
    queryid = queryid_of(planted)
    planted.execute("SELECT pg_stat_statements_reset()")
    run(planted, 2)
    save()
    return queryid


def text(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def url(queryid: object) -> str:
    return f"/dbtuning/statements/{queryid}/"


def test_the_page_shows_intervals_with_the_reset_as_a_gap(reset_between, staff_client):
    page = text(staff_client.get(url(reset_between)))
    assert f"Statement {reset_between}" in page
    assert "In 3 of the newest 3 snapshots" in page
    rows = re.findall(r"<tr><td>[^<]*</td><td>[^<]*</td>\s*(.*?)</tr>", page, re.S)
    assert len(rows) == 2
    newest, oldest = rows
    assert "its counters restarted" in newest
    assert '<td class="num">4</td>' in oldest  # 4 calls, the counter difference
    assert 'class="dbtuning-point"' in page
    # pg_stat_statements now: the 2 calls since the reset.
    assert re.search(r"Calls<strong>2</strong>", page)


def test_the_text_is_masked_and_escaped(reset_between, staff_client, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "PASSWORD", PASSWORD)
    page = text(staff_client.get(url(reset_between)))
    assert SECRET not in page
    assert PASSWORD not in page
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(" in page
    assert COLUMN in page


def test_the_plan_is_shown_on_postgresql_16(reset_between, staff_client):
    page = text(staff_client.get(url(reset_between)))
    assert "Plan (EXPLAIN GENERIC_PLAN)" in page
    if connection.pg_version >= 160000:
        assert "dbtuning-plan" in page
        assert SECRET not in page
    else:
        assert "needs PostgreSQL 16+" in page


def test_the_statements_and_history_pages_link_to_it(reset_between, staff_client):
    # Two PostgreSQL aliases in the test settings: links keep the one chosen.
    link = f'href="{url(reset_between)}?database=default"'
    assert link in text(staff_client.get("/dbtuning/statements/"))
    assert link in text(staff_client.get("/dbtuning/history/"))


def test_a_statement_only_in_snapshots_is_shown(reset_between, planted, staff_client):
    planted.execute("SELECT pg_stat_statements_reset()")
    page = text(staff_client.get(url(reset_between)))
    assert "Not among the 100 statements" in page
    assert COLUMN in page  # the text, from the newest snapshot that has it
    assert SECRET not in page


@pytest.mark.parametrize(
    "garbage",
    [
        "abc",
        "1.5",
        "+1",
        " 1",
        "1_0",
        "0x10",
        "١٢",
        "--1",
        str(INT64_MAX + 1),
        str(INT64_MIN - 1),
        "9" * 30,
        "<script>",
    ],
)
def test_a_queryid_that_is_not_a_signed_64_bit_integer_is_400(staff_client, garbage):
    response = staff_client.get(url(garbage))
    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"]
    assert b"<script>" not in response.content


@pytest.mark.parametrize("queryid", [0, -1, 42, INT64_MIN, INT64_MAX])
def test_an_unknown_queryid_is_404(planted, staff_client, queryid):
    response = staff_client.get(url(queryid))
    assert response.status_code == 404
    assert "no-store" in response["Cache-Control"]


def test_a_negative_queryid_is_found(planted, db, staff_client, monkeypatch):
    """queryids are signed: a statement whose id is negative has a page (the snapshot's
    id is replaced by a negative one to be sure of the sign)."""
    from django_dbtuning.models import Snapshot

    run(planted, 1)
    save()
    queryid = queryid_of(planted)
    row = Snapshot.objects.latest("taken_at")
    statements = row.data["statements"]
    column = statements["columns"].index("queryid")
    for entry in statements["rows"]:
        if entry[column] == queryid:
            entry[column] = -abs(queryid) or -1
            negative = entry[column]
    row.save()
    page = text(staff_client.get(url(negative)))
    assert f"Statement {negative}" in page


def test_the_database_parameter_is_validated(reset_between, staff_client):
    response = staff_client.get(url(reset_between) + "?database=<script>nope")
    assert response.status_code == 400
    assert b"<script>nope" not in response.content
    assert staff_client.get(url(reset_between) + "?database=default").status_code == 200


def test_anonymous_users_go_to_the_login(client):
    response = client.get(url(-5))
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/dbtuning/statements/-5/"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("who", ["not staff", "no permission"])
def test_users_without_staff_and_permission_get_403(client, users, who):
    client.force_login(users[who])
    response = client.get(url(1))
    assert response.status_code == 403
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_get_and_head(staff_client, method):
    response = getattr(staff_client, method)(url(1))
    assert response.status_code == 405
    assert "no-store" in response["Cache-Control"]


def test_head_is_served(reset_between, staff_client):
    assert staff_client.head(url(reset_between)).status_code == 200


def test_a_hidden_text_says_so(planted, db, staff_client):
    """A snapshot taken by a role that may not read another role's texts stores none."""
    from django_dbtuning.models import Snapshot

    run(planted, 1)
    save()
    queryid = queryid_of(planted)
    row = Snapshot.objects.latest("taken_at")
    statements = row.data["statements"]
    columns = statements["columns"]
    for entry in statements["rows"]:
        if entry[columns.index("queryid")] == queryid:
            entry[columns.index("query")] = None
    row.save()
    planted.execute("SELECT pg_stat_statements_reset()")
    page = text(staff_client.get(url(queryid)))
    assert "its text is hidden from this role" in page
