"""Adversarial pass (session 20) on the statements behind slow_query, n_plus_one_suspect,
--explain and baselines: one statement, several roles."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connections

from django_dbtuning.report.probe import connection_kwargs
from tests.report.test_report import (
    admin_connection,
    findings,
    fresh_statements,  # noqa: F401 - a fixture
    report_json,
)

pytestmark = pytest.mark.django_db

OTHER = "dbreport_adv_worker"
OTHER_PASSWORD = "adv-Worker-pw-7"
WRITER = "SELECT name FROM reportapp_writer WHERE id = %s"


@pytest.fixture
def worker_role(fresh_statements):  # noqa: F811 - the fixture imported above
    """A second login role (a Celery worker's, say) that runs the web role's queries."""
    with admin_connection() as conn:
        conn.execute(f"DROP ROLE IF EXISTS {OTHER}")
        conn.execute(
            f"CREATE ROLE {OTHER} LOGIN PASSWORD '{OTHER_PASSWORD}' "
            "IN ROLE pg_read_all_data"
        )
    kwargs = {
        **connection_kwargs(connections.settings["default"]),
        "user": OTHER,
        "password": OTHER_PASSWORD,
    }
    try:
        with psycopg.connect(**kwargs, autocommit=True) as other:
            yield other
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP OWNED BY {OTHER}")
            conn.execute(f"DROP ROLE {OTHER}")


def test_a_statement_run_by_two_roles_is_one_statement(worker_role, dbtuning):
    # 200 calls from each role: 400 together, over the 300 the threshold asks for.
    dbtuning(
        REPORT_THRESHOLDS={"n_plus_one_min_calls": 300, "n_plus_one_min_time_share": 0}
    )
    with admin_connection() as conn:
        for pk in range(200):
            conn.execute(WRITER, [pk])
    for pk in range(200):
        worker_role.execute(WRITER, [pk])
    document = report_json(
        "--database", "default", "--section", "statements", "--top", "0"
    )
    top = document["databases"]["default"]["statements"]["top"]
    rows = [r for r in top if "reportapp_writer" in r["query"]]
    # Before: two rows of 200 calls with the same queryid, and no finding.
    assert [r["calls"] for r in rows] == [400]
    assert len({r["queryid"] for r in top}) == len(top)
    suspects = [
        f
        for f in findings(document, "n_plus_one_suspect")
        if f["model"] == "reportapp.Writer"
    ]
    assert [f["data"]["calls"] for f in suspects] == [400]
