"""Fixtures the report's test modules share: each sets itself up and cleans up after
itself, so every module passes alone, with the others, and in any order."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from django.db import connections

from django_dbtuning.report.probe import connection_kwargs
from tests.reportapp.models import Review, Ticket, Volume, Writer


def _admin() -> psycopg.Connection:
    kwargs = connection_kwargs(connections.settings["default"])
    return psycopg.connect(**kwargs, autocommit=True)


def _clear_tickets() -> None:
    # The sequence is pushed to 2,000,000,000 below: a Ticket left from an earlier
    # module would meet the next module's Ticket on the same id.
    with _admin() as conn:
        conn.execute("DELETE FROM reportapp_ticket")
        conn.execute("SELECT setval('reportapp_ticket_id_seq', 1, false)")


@pytest.fixture(scope="module")
def planted(django_db_setup, django_db_blocker):
    """Rows, scans, an invalid index and a near-overflow sequence in the test database;
    all of it undone when the module ends."""
    _clear_tickets()
    with django_db_blocker.unblock():
        Review.objects.all().delete()
        Volume.objects.all().delete()
        Writer.objects.all().delete()
        writers = Writer.objects.bulk_create(
            Writer(name=f"w{i}", code=i) for i in range(20)
        )
        Volume.objects.bulk_create(
            Volume(
                writer=writers[i % 20],
                title=f"title {i % 7}",
                isbn=i,
                pages=100 + i,
                published=datetime.date(2020, 1, 1 + i % 28),
            )
            for i in range(200)
        )
        Ticket.objects.create(note="first")
    with _admin() as conn:
        conn.execute("ANALYZE")
        conn.execute("DROP INDEX IF EXISTS volume_title_unique")
        # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY volume_title_unique "
                "ON reportapp_volume (title)"
            )
        # Heavy use of the isbn index: it must never be reported as unused.
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        for isbn in range(60):
            conn.execute("SELECT id FROM reportapp_volume WHERE isbn = %s", [isbn])
        # An int column fed by a bigint sequence, 93 % of the way to int's limit.
        conn.execute("ALTER SEQUENCE reportapp_ticket_id_seq AS bigint")
        conn.execute("SELECT setval('reportapp_ticket_id_seq', 2000000000)")
        conn.execute("SELECT pg_stat_force_next_flush()")
    yield
    with _admin() as conn:
        conn.execute("DROP INDEX IF EXISTS volume_title_unique")
    _clear_tickets()
    connections.close_all()


@pytest.fixture(scope="module")
def reportapp(planted):
    """The planted problems (another name for :func:`planted`)."""


@pytest.fixture
def locked_volume():
    """A migration's ACCESS EXCLUSIVE lock on reportapp_volume, held for the test."""
    with _admin() as conn:
        conn.autocommit = False
        conn.execute("LOCK TABLE reportapp_volume IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()
