"""Concurrent copy_from loads on real PostgreSQL: overlapping upserts, lock errors.

Each thread has its own Django connection (connections are per thread), as separate
processes or web workers would.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, connections

from django_dbtuning.copy import CopyResult
from django_dbtuning.exceptions import CopyConcurrencyError, CopyError
from django_dbtuning.pool import connection_kwargs
from tests.copyapp.models import Item, Tally

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = [f"k{i:05d}" for i in range(20_000)]
WRITERS = (1, 2, 3, 4)


def run_together(loads: list[Callable[[], CopyResult]]) -> list[Any]:
    """Start every load at the same moment, each in its own thread and connection."""
    barrier = threading.Barrier(len(loads))
    results: list[Any] = [None] * len(loads)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = loads[i]()
        except BaseException as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(loads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def upsert(writer: int, *, batch_size: int, on_conflict: str) -> CopyResult:
    rows = [{"key": k, "value": writer * 10, "writer": writer} for k in KEYS]
    random.Random(writer).shuffle(rows)  # every writer in another order
    return Tally.objects.copy_from(
        rows,
        on_conflict="ignore" if on_conflict == "ignore any" else on_conflict,  # type: ignore[arg-type]
        # Without unique_fields, "ignore" skips a conflict on any unique constraint.
        unique_fields=None if on_conflict == "ignore any" else ["key"],
        batch_size=batch_size,
    )


@pytest.mark.parametrize(
    ("batch_size", "on_conflict"),
    [
        (1000, "update"),
        (5000, "update"),
        (20_000, "update"),
        (5000, "ignore"),
        (1000, "ignore any"),
    ],
)
def test_overlapping_concurrent_upserts_never_deadlock(
    batch_size: int, on_conflict: str
) -> None:
    """Issue 9: four writers x 20,000 shuffled keys deadlocked (3 of 4 failed)."""
    results = run_together(
        [
            partial(upsert, w, batch_size=batch_size, on_conflict=on_conflict)
            for w in WRITERS
        ]
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    # Every key was created by exactly one writer.
    assert sum(r.created for r in results) == len(KEYS)
    for result in results:
        assert result.rows == len(KEYS)
        if on_conflict == "update":
            assert result.created + result.updated == len(KEYS)
        else:
            assert result.updated == 0
    stored = list(Tally.objects.values_list("key", "value", "writer"))
    assert sorted(k for k, _, _ in stored) == KEYS
    # Each row is one writer's row, never a mix of two.
    assert all(
        value == writer * 10 and writer in WRITERS for _, value, writer in stored
    )
    if on_conflict != "update":
        created = Counter(writer for _, _, writer in stored)
        assert created == {
            w: r.created for w, r in zip(WRITERS, results, strict=True) if r.created
        }


def other_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(**connection_kwargs(connection.settings_dict))


def snapshot() -> list[tuple[Any, ...]]:
    return list(Tally.objects.order_by("key").values_list("key", "value", "writer"))


@pytest.fixture
def lock_timeout() -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '300ms'")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET lock_timeout")


def test_lock_timeout_in_an_upsert_names_it_and_writes_nothing(
    lock_timeout: None,
) -> None:
    Tally.objects.copy_from([{"key": k, "value": 0} for k in KEYS[:100]])
    before = snapshot()
    rows = [{"key": k, "value": 1, "writer": 9} for k in KEYS[:300]]
    with other_connection() as other:
        # Another transaction holds one of the rows the upsert must update.
        other.execute(
            "SELECT 1 FROM copyapp_tally WHERE key = %s FOR UPDATE", [KEYS[50]]
        )
        with pytest.raises(CopyConcurrencyError) as info:
            Tally.objects.copy_from(
                rows, on_conflict="update", unique_fields=["key"], batch_size=100
            )
        other.rollback()
    error = info.value
    assert isinstance(error, CopyError) and isinstance(error, OperationalError)
    assert error.sqlstate == "55P03"
    assert (error.first_row, error.last_row, error.batch) == (0, 299, None)
    message = str(error)
    assert "lock timeout" in message and "rows 0-299" in message
    assert "wrote nothing" in message
    # Rows before the locked key were inserted or updated, then rolled back.
    assert snapshot() == before


def test_lock_timeout_in_a_plain_load_names_the_batch(lock_timeout: None) -> None:
    Item.objects.copy_from([{"name": "kept", "quantity": 1, "price": 1, "sku": "kept"}])
    with other_connection() as other:
        # An uncommitted insert of the same unique key: the COPY has to wait for it.
        other.execute(
            "INSERT INTO copyapp_item (name, notes, quantity, stock, price, active, "
            "reference, data, tags, stock_code, created, modified) VALUES ('x', '', 1, "
            "0, 1, true, gen_random_uuid(), '{}', '{}', 's250', now(), now())"
        )
        rows = (
            {"name": "n", "quantity": i, "price": 1, "sku": f"s{i}"} for i in range(400)
        )
        with pytest.raises(CopyConcurrencyError) as info:
            Item.objects.copy_from(rows, batch_size=100)
        other.rollback()
    error = info.value
    assert (error.batch, error.first_row, error.last_row) == (2, 200, 299)
    assert "batch 2 (rows 200-299)" in str(error)
    assert list(Item.objects.values_list("sku", flat=True)) == ["kept"]


def test_deadlock_between_plain_loads_is_a_copy_error() -> None:
    """Two plain loads inserting the same unique keys in opposite orders can deadlock;
    the loser gets a CopyConcurrencyError (or, if it waited, a unique violation),
    never a raw OperationalError, and its rows are gone."""
    keys = [f"d{i}" for i in range(2000)]

    def load(order: list[str]) -> CopyResult:
        rows = ({"name": "n", "quantity": 1, "price": 1, "sku": k} for k in order)
        return Item.objects.copy_from(rows, batch_size=100)

    results = run_together([partial(load, keys), partial(load, keys[::-1])])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) >= 1
    assert all(isinstance(e, CopyError) for e in errors), errors
    assert Item.objects.count() == len(keys) * (2 - len(errors))
