"""Issue 9, after the hostile pass: the cases it found in copy_from, one test each.

Upsert ids of rows outside a partial unique index, which duplicate wins, errors at every
stage of a load, helper column names, ``%`` and ``"`` in names, unique_fields that match
no constraint, names with control characters, arrays and durations Django reads its own
way, and text files already read from. Real PostgreSQL, from the user's side.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, ProgrammingError, connection, models
from django.test.utils import CaptureQueriesContext, isolate_apps
from psycopg import sql

from django_dbtuning import CopyDataError, CopyError, CopyIntegrityError
from django_dbtuning.copy import CopyManager
from django_dbtuning.exceptions import CopyConcurrencyError
from django_dbtuning.pool import connection_kwargs
from tests.copyapp.models import Item, Publisher, Reserved, Sample, Slot, Tally

pytestmark = pytest.mark.django_db


def execute(statement: sql.Composable | str) -> None:
    with connection.cursor() as cursor:
        cursor.cursor.execute(statement)


def other_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(**connection_kwargs(connection.settings_dict))


def item(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"item {i}", "quantity": i, "price": 1, **extra}


# -- 1. upsert ids: a row outside a partial unique index gets its own id -----------------


def test_an_inactive_slot_gets_its_own_id_not_the_active_rows() -> None:
    """the inactive row got the active row's pk; save() then overwrote it."""
    active = Slot.objects.create(code="x", active=True, note="active")
    inactive = Slot(code="x", active=False, note="inactive")
    result = Slot.objects.copy_from(
        [inactive], on_conflict="update", unique_fields=["code"], return_ids=True
    )
    assert inactive.pk is not None and inactive.pk != active.pk
    assert result.ids == [inactive.pk]
    inactive.note = "edited"
    inactive.save()
    assert sorted(Slot.objects.values_list("active", "note")) == [
        (False, "edited"),
        (True, "active"),
    ]


@pytest.mark.parametrize("batch_size", [1, 2, 10])
def test_partial_index_ids_across_batches(batch_size: int) -> None:
    """The hostile pass's four rows: [1, 1, 1, 1] instead of [1, 2, 3, 1]."""
    Slot.objects.create(code="x", active=True, note="orig")
    rows = [
        {"code": "x", "active": True, "note": "new"},
        {"code": "x", "active": False, "note": "inactive1"},
        {"code": "x", "active": False, "note": "inactive2"},
        {"code": "x", "active": True, "note": "new2"},
    ]
    result = Slot.objects.copy_from(
        rows,
        on_conflict="update",
        unique_fields=["code"],
        return_ids=True,
        batch_size=batch_size,
    )
    by_id = {
        pk: (active, note)
        for pk, active, note in Slot.objects.values_list("pk", "active", "note")
    }
    assert result.ids is not None
    assert [by_id[pk] for pk in result.ids] == [
        (True, "new2"),
        (False, "inactive1"),
        (False, "inactive2"),
        (True, "new2"),
    ]
    assert (result.created, result.updated) == (2, 1)


def test_a_partial_target_needs_the_fields_its_condition_reads() -> None:
    """Which rows never conflict is decided on the staged rows: 'active' must be there."""
    with pytest.raises(ValueError, match=r"condition reads \['active'\]"):
        Slot.objects.copy_from(
            [Slot(code="x", note="n")],
            fields=["code", "note"],
            on_conflict="update",
            unique_fields=["code"],
        )


def test_null_keys_get_their_own_ids() -> None:
    """A NULL in a nullable unique key never conflicts: each row is inserted."""
    Item.objects.copy_from([item(0, sku="a")])
    result = Item.objects.copy_from(
        [item(1, sku=None), item(2, sku="a"), item(3, sku=None)],
        on_conflict="update",
        unique_fields=["sku"],
        return_ids=True,
    )
    by_id = dict(Item.objects.values_list("pk", "quantity"))
    assert result.ids is not None
    assert [by_id[pk] for pk in result.ids] == [1, 2, 3]
    assert Item.objects.count() == 3


@isolate_apps("tests.copyapp")
@pytest.mark.parametrize("declared", [True, False])
def test_null_keys_conflict_under_nulls_not_distinct(declared: bool) -> None:
    """NULLS NOT DISTINCT: a NULL key is a key like any other (one row, one id)."""
    constraints = []
    if declared:
        constraints = [
            models.UniqueConstraint(
                fields=["key"], name="nnd_key", nulls_distinct=False
            )
        ]
    model = unmanaged(
        "NullsNotDistinct",
        "nnd",
        unique=False,
        key=models.CharField(max_length=20, null=True),
        meta={"constraints": constraints},
    )
    execute(
        "CREATE TABLE nnd (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "key varchar(20), note text NOT NULL DEFAULT '', "
        "active boolean NOT NULL DEFAULT true, UNIQUE NULLS NOT DISTINCT (key))"
    )
    rows = [{"key": None, "note": "a"}, {"key": "k"}, {"key": None, "note": "b"}]
    result = model.objects.copy_from(
        rows, on_conflict="update", unique_fields=["key"], return_ids=True
    )
    stored = dict(model.objects.values_list("pk", "note"))
    assert result.ids is not None and result.ids[0] == result.ids[2]
    assert stored == {result.ids[0]: "b", result.ids[1]: ""}


# -- 15. ignore keeps the first of duplicate keys, update the last ----------------------


@pytest.mark.parametrize(
    ("on_conflict", "kept"), [("ignore", [1, 2]), ("update", [5, 4])]
)
@pytest.mark.parametrize("batch_size", [1, 2, 100])
def test_which_duplicate_wins(
    on_conflict: str, kept: list[int], batch_size: int
) -> None:
    rows = [
        {"key": "a", "value": 1},
        {"key": "b", "value": 2},
        {"key": "a", "value": 3},
        {"key": "b", "value": 4},
        {"key": "a", "value": 5},
    ]
    result = Tally.objects.copy_from(
        rows,
        on_conflict=on_conflict,
        unique_fields=["key"],
        return_ids=True,
        batch_size=batch_size,
    )
    assert list(Tally.objects.order_by("key").values_list("value", flat=True)) == kept
    pks = dict(Tally.objects.values_list("key", "pk"))
    assert result.ids == [pks[r["key"]] for r in rows]
    assert (result.created, result.updated) == (2, 0)


def test_ignore_keeps_the_existing_row_and_the_first_new_one() -> None:
    Tally.objects.create(key="old", value=0)
    rows = [
        {"key": "old", "value": 1},
        {"key": "new", "value": 2},
        {"key": "new", "value": 3},
    ]
    # Without unique_fields, too: ordered by the unique columns, then input order.
    for unique_fields in (["key"], None):
        Tally.objects.filter(key="new").delete()
        Tally.objects.copy_from(
            rows,
            on_conflict="ignore",
            unique_fields=unique_fields,
            batch_size=2,
        )
        values = dict(Tally.objects.values_list("key", "value"))
        assert values == {"old": 0, "new": 2}


# -- 5. every database error of a load is a CopyError naming its stage -----------------


@pytest.fixture
def short_lock_timeout() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '200ms'")
    yield


@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
def test_a_timeout_while_creating_the_staging_table(timeout: str) -> None:
    """a raw OperationalError came out of the staging table's creation."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL {timeout} = '200ms'")
    with other_connection() as other:
        other.execute("LOCK TABLE copyapp_tally IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(CopyConcurrencyError) as info:
            Tally.objects.copy_from(
                [{"key": "b", "value": 2}],
                on_conflict="update",
                unique_fields=["key"],
            )
        other.rollback()
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL {timeout} = 0")
    error = info.value
    assert isinstance(error, OperationalError)
    assert "while creating the staging table" in str(error)
    assert "wrote nothing" in str(error)
    assert (error.batch, error.first_row, error.last_row) == (None, None, None)
    assert Tally.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_lock_timeout_while_checking_foreign_keys() -> None:
    publisher = Publisher.objects.create(name="p")  # committed: the other sees it
    rows = [item(i, publisher_id=publisher.pk) for i in range(5)]
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
    try:
        with other_connection() as other:
            # FOR UPDATE blocks the FOR KEY SHARE that the foreign key check takes.
            other.execute(
                "SELECT 1 FROM copyapp_publisher WHERE id = %s FOR UPDATE",
                [publisher.pk],
            )
            with pytest.raises(CopyConcurrencyError) as info:
                Item.objects.copy_from(rows, batch_size=2)
            other.rollback()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    error = info.value
    assert "while checking the foreign keys of batch 0 (rows 0-1)" in str(error)
    assert (error.batch, error.first_row, error.last_row) == (0, 0, 1)
    assert Item.objects.count() == 0


def test_permission_denied_while_taking_ids_names_the_stage() -> None:
    """Not a concurrency error: a CopyError that is also Django's ProgrammingError."""
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dbtuning_copy_no_seq")
        cursor.execute("CREATE ROLE dbtuning_copy_no_seq")
        cursor.execute("GRANT USAGE ON SCHEMA public TO dbtuning_copy_no_seq")
        cursor.execute("GRANT SELECT, INSERT ON copyapp_tally TO dbtuning_copy_no_seq")
        cursor.execute("SET LOCAL ROLE dbtuning_copy_no_seq")
    with pytest.raises(ProgrammingError) as info:
        Tally.objects.copy_from(
            [{"key": "a", "value": 1}, {"key": "b", "value": 2}], return_ids=True
        )
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    error = info.value
    assert isinstance(error, CopyError)
    assert str(error) == (
        "COPY into copyapp.Tally failed while taking ids for batch 0 (rows 0-1): "
        "permission denied for sequence copyapp_tally_id_seq. The load was rolled "
        "back and wrote nothing."
    )
    assert error.sqlstate == "42501"


@pytest.mark.django_db(transaction=True)
def test_a_serialization_failure_at_commit_names_the_commit() -> None:
    """The load's own transaction fails at COMMIT (a deferred constraint trigger)."""
    execute(
        "CREATE FUNCTION copyapp_fail_commit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'at commit' USING ERRCODE = '40001'; END $$"
    )
    execute(
        "CREATE CONSTRAINT TRIGGER copyapp_fail_commit AFTER INSERT ON copyapp_tally "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        "EXECUTE FUNCTION copyapp_fail_commit()"
    )
    try:
        with pytest.raises(CopyConcurrencyError) as info:
            Tally.objects.copy_from([{"key": "a", "value": 1}])
        assert "while committing the load" in str(info.value)
        assert Tally.objects.count() == 0
    finally:
        execute("DROP TRIGGER copyapp_fail_commit ON copyapp_tally")
        execute("DROP FUNCTION copyapp_fail_commit()")


def test_a_lock_timeout_while_the_server_reads_a_text_file(
    short_lock_timeout: None,
) -> None:
    data = b"key\tvalue\twriter\nx\t1\t0\n"
    with other_connection() as other:
        other.execute("LOCK TABLE copyapp_tally IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(CopyConcurrencyError) as info:
            Tally.objects.copy_from(io.BytesIO(data), format="text")
        other.rollback()
    assert "while reading the text file" in str(info.value)
    assert Tally.objects.count() == 0


# -- 6. helper columns never collide with the model's ----------------------------------


@pytest.mark.parametrize("fmt", ["rows", "text", "binary", "csv"])
def test_columns_named_like_the_helper_columns(fmt: str) -> None:
    Reserved.objects.copy_from(
        [{"key": "a", "row": "r", "alone": "x", "again": 1}, {"key": "b"}]
    )
    result = Reserved.objects.copy_from(
        [{"key": "a", "row": "r2", "alone": "y", "again": 2}, {"key": "c", "row": "3"}],
        on_conflict="update",
        unique_fields=["key"],
        return_ids=True,
    )
    pks = dict(Reserved.objects.values_list("key", "pk"))
    assert result.ids == [pks["a"], pks["c"]]
    expected = [
        ("a", "r2", "y", 2),
        ("b", None, None, None),
        ("c", "3", None, None),
    ]
    fields = ("key", "row", "alone", "again")
    assert list(Reserved.objects.order_by("key").values_list(*fields)) == expected
    if fmt == "rows":
        return
    data = Reserved.objects.order_by("key").copy_to(format=fmt)
    assert isinstance(data, bytes)
    Reserved.objects.all().delete()
    options: dict[str, Any] = {"format": fmt}
    if fmt == "binary":
        options["fields"] = [f.attname for f in Reserved._meta.concrete_fields]
    Reserved.objects.copy_from(
        io.BytesIO(data), on_conflict="ignore", unique_fields=["key"], **options
    )
    assert list(Reserved.objects.order_by("key").values_list(*fields)) == expected


# -- 7, 9, 13. hostile table and constraint names --------------------------------------


def unmanaged(name: str, table: str, **attrs: Any) -> Any:
    meta = type(
        "Meta", (), {"app_label": "copyapp", "db_table": table, **attrs.pop("meta", {})}
    )
    body = {
        "__module__": __name__,
        "key": models.CharField(max_length=20, unique=attrs.pop("unique", True)),
        "note": models.TextField(default=""),
        "active": models.BooleanField(default=True),
        "objects": CopyManager(),
        "Meta": meta,
        **attrs,
    }
    return type(name, (models.Model,), body)


def create_table(table: str, *, unique: str | None = None) -> None:
    execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "key varchar(20) NOT NULL, note text NOT NULL DEFAULT '', "
            "active boolean NOT NULL DEFAULT true)"
        ).format(sql.Identifier(table))
    )
    if unique is not None:
        execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE (key)").format(
                sql.Identifier(table), sql.Identifier(unique)
            )
        )


def table_rows(table: str, *columns: str) -> list[tuple[Any, ...]]:
    """Read with psycopg: Django's own queries cannot name a table holding %s."""
    with connection.cursor() as cursor:
        cursor.cursor.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
            )
        )
        return list(cursor.cursor.fetchall())


@isolate_apps("tests.copyapp")
@pytest.mark.parametrize("table", ["pct %s %% {} %(x)s", "a%%b", "a%b"])
def test_percent_in_table_names_with_explicit_ids(table: str) -> None:
    """setval() read max(id) with the table name in a %s statement."""
    model = unmanaged("Pct", table)
    create_table(table, unique=f"{table}_key")
    # A neighbour whose name is what %% would turn this one into.
    neighbour = table.replace("%%", "%")
    if neighbour != table:
        create_table(neighbour)
    model.objects.copy_from([{"id": 40, "key": "a"}, {"key": "b"}], return_ids=True)
    data = model.objects.order_by("pk").copy_to(format="binary")
    assert isinstance(data, bytes)
    execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    fields = [f.attname for f in model._meta.concrete_fields]
    model.objects.copy_from(io.BytesIO(data), format="binary", fields=fields)
    # The sequence moved past the explicit ids: the next row gets a new id.
    result = model.objects.copy_from(
        [{"key": "c"}, {"key": "a", "note": "up"}],
        on_conflict="update",
        unique_fields=["key"],
        return_ids=True,
    )
    assert result.ids is not None and result.ids[0] > 40 and result.ids[1] == 40
    assert table_rows(table, "id", "key", "note") == [
        (1, "b", ""),
        (40, "a", "up"),
        (result.ids[0], "c", ""),
    ]
    if neighbour != table:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT last_value FROM pg_sequences WHERE schemaname = 'public' "
                "AND sequencename = %s",
                [f"{neighbour}_id_seq"],
            )
            assert cursor.fetchone() == (None,)


@isolate_apps("tests.copyapp")
def test_percent_in_a_partial_unique_table() -> None:
    """The partial index's predicate is bound once and never next to a %s."""
    table = "slot %s %%"
    model = unmanaged(
        "PctSlot",
        table,
        unique=False,
        meta={
            "constraints": [
                models.UniqueConstraint(
                    fields=["key"],
                    condition=models.Q(active=True, note__in=["%s", "100%"]),
                    name="pct_slot_active",
                )
            ]
        },
    )
    create_table(table)
    execute(
        sql.SQL(
            "CREATE UNIQUE INDEX ON {} (key) WHERE active AND note IN ('%s', '100%')"
        ).format(sql.Identifier(table))
    )
    rows = [
        {"key": "x", "active": True, "note": "%s"},
        {"key": "x", "active": False, "note": "%s"},
        {"key": "x", "active": True, "note": "100%"},
        {"key": "x", "active": True, "note": "other"},
    ]
    result = model.objects.copy_from(
        rows, on_conflict="update", unique_fields=["key"], return_ids=True
    )
    notes = dict(table_rows(table, "id", "note"))
    assert result.ids is not None
    assert [notes[pk] for pk in result.ids] == ["100%", "%s", "100%", "other"]
    assert len(set(result.ids)) == 3


@isolate_apps("tests.copyapp")
@pytest.mark.parametrize(
    ("meta", "column", "needle"),
    [
        ({"db_table": 'Weird "T"'}, None, "db_table of copyapp.Quoted 'Weird \"T\"'"),
        ({"db_table": '"a"b"'}, None, "is not a valid quoted name"),
        ({"db_table": "copyapp_tally"}, 'k"ey', "db_column of copyapp.Quoted.key"),
    ],
)
def test_a_double_quote_in_a_name_is_refused_in_one_line(
    meta: dict[str, str], column: str | None, needle: str
) -> None:
    """'invalid name syntax' from the server; Django cannot create these either."""
    body: dict[str, Any] = {
        "__module__": __name__,
        "key": models.CharField(max_length=20, db_column=column),
        "objects": CopyManager(),
        "Meta": type("Meta", (), {"app_label": "copyapp", **meta}),
    }
    model: Any = type("Quoted", (models.Model,), body)
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(ValueError) as info,
    ):
        model.objects.copy_from([{"key": "a"}])
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not queries.captured_queries


@isolate_apps("tests.copyapp")
def test_a_schema_qualified_table_still_loads() -> None:
    """Django passes a name written quoted through: "schema"."table"."""
    execute("CREATE SCHEMA copyapp_other")
    create_table("t", unique="t_key")
    execute("ALTER TABLE t SET SCHEMA copyapp_other")
    model = unmanaged("Other", '"copyapp_other"."t"')
    model.objects.copy_from([{"key": "a"}, {"key": "b"}])
    result = model.objects.copy_from(
        [{"key": "a", "note": "up"}, {"key": "c"}],
        on_conflict="update",
        unique_fields=["key"],
        return_ids=True,
    )
    assert dict(model.objects.values_list("key", "note")) == {
        "a": "up",
        "b": "",
        "c": "",
    }
    pks = dict(model.objects.values_list("key", "pk"))
    assert result.ids == [pks["a"], pks["c"]]


@isolate_apps("tests.copyapp")
@pytest.mark.parametrize("on_conflict", [None, "update"])
def test_control_characters_in_names_are_escaped_and_the_row_found(
    on_conflict: str | None,
) -> None:
    """a newline in the table and constraint names: no row, a raw newline."""
    table = "nl\nline"
    model = unmanaged("Newline", table, unique=False)
    create_table(table, unique="nl\nline\u202e_key")
    execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (note <> 'bad')").format(
            sql.Identifier(table), sql.Identifier("no\tbad")
        )
    )
    model.objects.copy_from([{"key": "taken"}])
    options: dict[str, Any] = {}
    rows: list[dict[str, Any]] = [{"key": "a"}, {"key": "b"}, {"key": "taken"}]
    if on_conflict:
        # Found by the merge: a CHECK the staging table does not have.
        options = {"on_conflict": "update", "unique_fields": ["id"]}
        rows = [
            {"id": 100, "key": "a"},
            {"id": 101, "key": "b", "note": "bad"},
            {"id": 102, "key": "c"},
        ]
    with pytest.raises(CopyIntegrityError) as info:
        model.objects.copy_from(rows, **options)
    message = str(info.value)
    assert "\n" not in message and "\t" not in message and "\u202e" not in message
    if on_conflict:
        assert info.value.row == 1
        assert 'check constraint "no\\tbad"' in message
    else:
        assert (info.value.row, info.value.column) == (2, "key")
        assert 'unique constraint "nl\\nline\\u202e_key"' in message
        assert 'key ("key")' in message or "key (key)" in message
        assert info.value.constraint == "nl\nline\u202e_key"


# -- 8. unique_fields that no unique constraint matches --------------------------------


@pytest.mark.parametrize(
    ("model", "unique_fields", "row", "declared"),
    [
        (Sample, ["text"], {"text": "x"}, "(id)"),
        (Tally, ["value"], {"key": "k", "value": 1}, "(id), (key)"),
        (Tally, ["key", "value"], {"key": "k", "value": 1}, "(id), (key)"),
    ],
)
@pytest.mark.parametrize("on_conflict", ["update", "ignore"])
def test_unique_fields_without_a_constraint_are_refused_before_any_row(
    model: Any,
    unique_fields: list[str],
    row: dict[str, Any],
    declared: str,
    on_conflict: str,
) -> None:
    """the server said 'no unique or exclusion constraint matching' at the end."""
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(ValueError) as info,
    ):
        model.objects.copy_from(
            [row], on_conflict=on_conflict, unique_fields=unique_fields
        )
    message = str(info.value)
    assert f"unique_fields {sorted(unique_fields)} of {model._meta.label}" in message
    assert f"the model declares unique {declared}" in message
    assert "_pkey (id)" in message
    assert not any("COPY" in q["sql"] for q in queries.captured_queries)
    assert model.objects.count() == 0


def test_unique_fields_may_name_an_index_made_outside_the_model() -> None:
    execute("CREATE UNIQUE INDEX copyapp_sample_short_u ON copyapp_sample (short)")
    execute(
        "CREATE UNIQUE INDEX copyapp_sample_text_p ON copyapp_sample (text) WHERE number > 100"
    )
    Sample.objects.copy_from([{"short": "a", "number": 1}])
    result = Sample.objects.copy_from(
        [{"short": "a", "number": 2}, {"short": "b", "number": 3}],
        on_conflict="update",
        unique_fields=["short"],
        update_fields=["number"],
        return_ids=True,
    )
    assert (result.created, result.updated) == (1, 1)
    assert dict(Sample.objects.values_list("short", "number")) == {"a": 2, "b": 3}
    # A partial index: its predicate is not known to the model, so it cannot be used.
    with pytest.raises(ValueError, match="copyapp_sample_short_u \\(short\\)"):
        Sample.objects.copy_from(
            [{"text": "t"}], on_conflict="ignore", unique_fields=["text"]
        )


@isolate_apps("tests.copyapp")
def test_a_deferrable_unique_constraint_is_refused() -> None:
    model = unmanaged(
        "Deferred",
        "copyapp_tally",
        unique=False,
        meta={
            "constraints": [
                models.UniqueConstraint(
                    fields=["key"],
                    name="deferred_key",
                    deferrable=models.Deferrable.DEFERRED,
                )
            ]
        },
    )
    with pytest.raises(ValueError, match="DEFERRABLE unique constraint"):
        model.objects.copy_from(
            [{"key": "a"}], on_conflict="update", unique_fields=["key"]
        )


# -- 3. arrays: only what Django would write -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("numbers", [[1, 2]]),  # 2-D into integer[]
        ("numbers", [[1], [2]]),
        ("numbers", [[1, None]]),
        ("numbers", ["2147483648"]),  # was wrapped to -2147483648
        ("numbers", False),  # stored as {}
        ("numbers", 0),
        ("numbers", ""),
        ("numbers", datetime.timedelta(0)),
        ("numbers", {1, 2}),
        ("numbers", range(3)),
        ("words", {"a": 1}),  # stored as its keys
        ("words", ""),  # stored as {}
        ("words", "abc"),
        ("words", False),
        ("words", {"x"}),
    ],
)
def test_array_values_django_refuses_are_refused(field: str, value: Any) -> None:
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from([{"text": "ok"}, {"text": "bad", field: value}])
    assert (info.value.row, info.value.column) == (1, field)
    assert Sample.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("words", [["a"], ["b"]]),  # a list item of a text array: str(), as Django
        ("words", ([1, None], "x")),
        ("words", [1.5, True, None]),
        ("numbers", (1, 2)),
        ("numbers", ["1", True, 2.9]),
        ("numbers", []),
    ],
)
def test_array_values_are_stored_as_bulk_create_stores_them(
    field: str, value: Any
) -> None:
    Sample.objects.bulk_create([Sample(**{field: value})])
    expected = Sample.objects.values_list(field, flat=True).get()
    Sample.objects.all().delete()
    Sample.objects.copy_from([{field: value}])
    assert Sample.objects.values_list(field, flat=True).get() == expected


# -- 14. durations: text read the same by Django and PostgreSQL, or refused ------------


@pytest.mark.parametrize(
    "cell",
    ["10:00", "25:00", "-10:00", "1 10:00", "00:00:01.1234567", "P1DT1.1234567S"],
)
def test_durations_django_and_postgresql_read_differently_are_refused(
    cell: str,
) -> None:
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from(io.StringIO(f"text,span\nok,\nok,{cell}\n"))
    assert (info.value.row, info.value.column) == (1, "span")
    assert "CSV line 3" in str(info.value)
    with pytest.raises(CopyDataError):
        Sample.objects.copy_from([{"span": cell}])


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("10:00:00", datetime.timedelta(hours=10)),
        ("10:00.5", datetime.timedelta(minutes=10, microseconds=500_000)),
        ("3 days 04:05:06", datetime.timedelta(days=3, hours=4, minutes=5, seconds=6)),
        (
            "-1 day +02:03:04",
            datetime.timedelta(days=-1, hours=2, minutes=3, seconds=4),
        ),
        ("90", datetime.timedelta(seconds=90)),
        ("P1DT2H", datetime.timedelta(days=1, hours=2)),
        ("00:00:01.123456", datetime.timedelta(seconds=1, microseconds=123456)),
    ],
)
def test_durations_both_read_alike_load(
    cell: str, expected: datetime.timedelta
) -> None:
    Sample.objects.copy_from(io.StringIO(f"span\n{cell}\n"))
    assert Sample.objects.values_list("span", flat=True).get() == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text::interval", [cell])
        assert cursor.fetchone() == (expected,)


# -- 4. a text file already read from --------------------------------------------------

CRLF_FILE = b'preamble\r\ntext,maybe\r\n"a\r\nb",c\r\n"d\re",\r\n'


def test_a_text_file_read_from_keeps_crlf_inside_quotes(tmp_path: Path) -> None:
    """the switch to newline="" failed silently and "a\\r\\nb" became "a\\nb"."""
    path = tmp_path / "f.csv"
    path.write_bytes(CRLF_FILE)
    for encoding in ("utf-8", "latin-1", "cp1252"):
        Sample.objects.all().delete()
        with path.open(encoding=encoding) as handle:  # newline=None: translates
            assert handle.readline() == "preamble\n"
            assert Sample.objects.copy_from(handle).rows == 2
        values = list(Sample.objects.order_by("pk").values_list("text", "maybe"))
        assert values == [("a\r\nb", "c"), ("d\re", None)]


def test_a_text_file_that_cannot_be_switched_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(CRLF_FILE)

    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    cases: list[tuple[Any, str]] = []
    piped = io.TextIOWrapper(Pipe(CRLF_FILE), encoding="utf-8")
    piped.readline()
    cases.append((piped, "it is not seekable"))
    iterated = path.open(encoding="utf-8")
    next(iterated)
    cases.append((iterated, "tell() is disabled"))
    sig = path.open(encoding="utf-8-sig")
    sig.readline()
    cases.append((sig, "utf-8-sig decoder holds a state"))
    for handle, why in cases:
        with pytest.raises(ValueError) as info:
            Sample.objects.copy_from(handle)
        message = str(info.value)
        assert why in message
        assert 'open(path, newline="")' in message and "'rb'" in message
        handle.close()
    assert Sample.objects.count() == 0
