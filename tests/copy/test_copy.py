"""copy_from / copy_to against a real PostgreSQL: types, NULLs, defaults, ids, conflicts, files."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import io
import itertools
import tracemalloc
import uuid
from typing import Any

import django
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    DataError,
    IntegrityError,
    ProgrammingError,
    connection,
    connections,
    transaction,
)
from django.test.utils import CaptureQueriesContext

from django_dbtuning import CopyDataError, CopyError, CopyIntegrityError
from django_dbtuning.copy import CopyManager, CopyQuerySet, CopyResult
from tests.copyapp.models import Custom, Item, Pair, Publisher, Restaurant, Token

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

PRICE = decimal.Decimal("9.99")


def item(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"item {i}", "quantity": i, "price": PRICE, **extra}


@pytest.fixture
def publisher() -> Publisher:
    return Publisher.objects.create(name="Acme")


# -- inputs ----------------------------------------------------------------------------


def test_dicts_fill_defaults_per_row_and_auto_now(publisher: Publisher) -> None:
    before = datetime.datetime.now(datetime.UTC)
    result = Item.objects.copy_from(
        [item(i, publisher_id=publisher.pk) for i in range(3)]
    )
    assert result == CopyResult(rows=3, created=3, updated=0, ids=None)
    items = list(Item.objects.order_by("quantity"))
    assert [i.name for i in items] == ["item 0", "item 1", "item 2"]
    # uuid4 called per row, not once
    assert len({i.reference for i in items}) == 3
    # auto_now_add was left NULL by django-postgres-copy: not here
    assert all(i.created >= before and i.modified >= before for i in items)
    assert all(
        i.data == {} and i.tags == [] and i.active and i.notes == "" for i in items
    )
    assert all(i.publisher_id == publisher.pk for i in items)


def test_dicts_by_field_name_take_model_instances(publisher: Publisher) -> None:
    Item.objects.copy_from([item(1, publisher=publisher)])
    assert Item.objects.get().publisher == publisher


def test_generator_is_streamed_not_lost() -> None:
    """pgbulk 3.3 loaded 0 rows from a generator."""
    result = Item.objects.copy_from((item(i) for i in range(2500)), batch_size=1000)
    assert result.rows == 2500
    assert Item.objects.count() == 2500


def test_tuples_with_fields() -> None:
    Item.objects.copy_from(
        [("a", 1, "1.50"), ("b", 2, 3)], fields=["name", "quantity", "price"]
    )
    assert sorted(Item.objects.values_list("name", "price")) == [
        ("a", decimal.Decimal("1.50")),
        ("b", decimal.Decimal("3.00")),
    ]


def test_tuples_need_fields() -> None:
    with pytest.raises(ValueError, match="fields="):
        Item.objects.copy_from([("a", 1, 2)])


def test_tuple_of_wrong_length_names_the_row() -> None:
    rows = [("a", 1, 2), ("b", 2)]
    with pytest.raises(CopyError, match="row 1") as info:
        Item.objects.copy_from(rows, fields=["name", "quantity", "price"])
    assert info.value.row == 1
    assert Item.objects.count() == 0


def test_instances_get_pks_and_state(publisher: Publisher) -> None:
    objs = [
        Item(name=f"i{i}", quantity=i, price=PRICE, publisher=publisher)
        for i in range(5)
    ]
    result = Item.objects.copy_from(objs, return_ids=True, batch_size=2)
    assert result.ids == [o.pk for o in objs]
    assert all(o.pk is not None and not o._state.adding for o in objs)
    assert all(o._state.db == "default" for o in objs)
    assert {o.pk: o.name for o in objs} == dict(Item.objects.values_list("pk", "name"))
    assert all(o.created is not None for o in objs)


def test_explicit_pks_advance_the_sequence() -> None:
    Item.objects.copy_from([item(1, id=1000)])
    new = Item.objects.create(name="after", quantity=1, price=PRICE)
    assert new.pk > 1000


def test_client_side_uuid_pk_is_returned() -> None:
    tokens = [Token(label="a"), Token(label="b")]
    result = Token.objects.copy_from(tokens, return_ids=True)
    assert result.ids == [t.id for t in tokens]
    assert set(Token.objects.values_list("id", flat=True)) == set(result.ids)


def test_return_ids_are_in_input_order_across_batches() -> None:
    result = Item.objects.copy_from(
        (item(i) for i in range(25)), return_ids=True, batch_size=7
    )
    assert result.ids is not None and len(result.ids) == 25
    stored = dict(Item.objects.values_list("pk", "quantity"))
    assert [stored[pk] for pk in result.ids] == list(range(25))


def test_empty_input() -> None:
    assert Item.objects.copy_from([]) == CopyResult()
    assert Item.objects.copy_from(iter([]), return_ids=True).ids == []


# -- field kinds ---------------------------------------------------------------------


def test_json_array_decimal_uuid_date_and_db_column() -> None:
    ref = uuid.uuid4()
    Item.objects.copy_from(
        [
            item(
                1,
                data={"a": [1, 2, None], "b": "x"},
                extra={
                    "when": datetime.date(2024, 1, 2),
                    "amount": decimal.Decimal("1.1"),
                },
                tags=["x", "y"],
                reference=ref,
                sku="SKU-1",
                day=datetime.date(2024, 5, 6),
                ratio=1,
            ),
            item(2, data=[1, "two"], tags=[], extra=None, day="2024-05-07"),
            item(3, data="just a string", tags=["z", None]),
        ]
    )
    one, two, three = Item.objects.order_by("quantity")
    assert one.data == {"a": [1, 2, None], "b": "x"}
    # the field's own encoder (DjangoJSONEncoder) was used
    assert one.extra == {"when": "2024-01-02", "amount": "1.1"}
    assert one.tags == ["x", "y"] and two.tags == [] and three.tags == ["z", None]
    assert one.reference == ref and one.sku == "SKU-1" and one.ratio == 1.0
    assert one.day == datetime.date(2024, 5, 6) and two.day == datetime.date(2024, 5, 7)
    assert (
        two.data == [1, "two"] and two.extra is None and three.data == "just a string"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT stock_code FROM copyapp_item WHERE quantity = 1")
        assert cursor.fetchone() == ("SKU-1",)


def test_values_are_converted_like_django() -> None:
    Item.objects.copy_from(
        [
            item(
                1, quantity="41", price=2.5, active="False", reference=str(uuid.uuid4())
            ),
            item(2, quantity=True, price=3, active=0, ratio="0.5"),
        ]
    )
    one, two = Item.objects.order_by("name")
    assert (one.quantity, one.price, one.active) == (41, decimal.Decimal("2.50"), False)
    assert (two.quantity, two.price, two.active, two.ratio) == (
        1,
        decimal.Decimal("3.00"),
        False,
        0.5,
    )


def test_naive_datetime_warns_like_django() -> None:
    naive = datetime.datetime(2024, 1, 1, 12, 0)
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        Item.objects.copy_from([item(1, created=naive)])
    assert Item.objects.get().created == naive.replace(tzinfo=datetime.UTC)


def test_custom_field_and_unknown_types_use_text_copy() -> None:
    Custom.objects.copy_from(
        [{"shout": "hello", "address": "10.0.0.1"}, {"shout": "b", "address": None}]
    )
    assert sorted(Custom.objects.values_list("shout", "address")) == [
        ("B", None),
        ("HELLO", "10.0.0.1"),
    ]


@pytest.mark.skipif(django.VERSION < (5, 0), reason="db_default is Django 5+")
def test_db_default_and_generated_fields() -> None:
    from tests.copyapp.models import Defaults

    result = Defaults.objects.copy_from(
        [{"name": "a"}, {"name": "b", "level": 1}, {"name": "c", "width": 5}],
        return_ids=True,
    )
    rows = {d.name: d for d in Defaults.objects.all()}
    assert rows["a"].level == 7 and rows["b"].level == 1
    assert rows["a"].stamp is not None
    assert rows["a"].area == 6 and rows["c"].area == 15
    assert result.ids == [rows[n].pk for n in "abc"]
    objs = [Defaults(name="x"), Defaults(name="y", level=3)]
    Defaults.objects.copy_from(objs)
    assert dict(
        Defaults.objects.filter(name__in="xy").values_list("name", "level")
    ) == {
        "x": 7,
        "y": 3,
    }
    with pytest.raises(ValueError, match="generated"):
        Defaults.objects.copy_from([{"name": "z", "area": 1}])


# -- no silent truncation, wrong values ----------------------------------------------


@pytest.mark.parametrize("on_conflict", [None, "ignore"])
def test_over_long_value_raises_never_truncates(on_conflict: str | None) -> None:
    """django-postgres-copy (cast) and pgbulk upsert (first row) truncated silently."""
    rows = [item(0, name="x" * 21, sku="a")]
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(rows, on_conflict=on_conflict)  # type: ignore[arg-type]
    error = info.value
    assert (error.row, error.column) == (0, "name")
    assert (
        "value too long" in str(error)
        and "row 0" in str(error)
        and "'name'" in str(error)
    )
    assert isinstance(error, DataError)
    assert Item.objects.count() == 0


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        ({"quantity": "many"}, "quantity"),
        ({"price": "cheap"}, "price"),
        ({"active": "perhaps"}, "active"),
        ({"reference": "not-a-uuid"}, "reference"),
        ({"tags": 5}, "tags"),
        ({"quantity": 2**40}, "quantity"),
        ({"quantity": 2**31}, "quantity"),
        ({"stock": -(2**31) - 1}, "stock"),
        ({"price": decimal.Decimal("123456789012")}, "price"),
    ],
)
def test_wrong_values_name_row_and_column(bad: dict[str, Any], column: str) -> None:
    rows = [item(0), item(1), item(2, **bad), item(3)]
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(rows)
    assert (info.value.row, info.value.column) == (2, column)
    assert "row 2" in str(info.value)
    assert Item.objects.count() == 0


def test_check_constraint_names_the_row() -> None:
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from([item(0), item(1, stock=-1)])
    assert info.value.row == 1
    assert "stock" in str(info.value) or info.value.constraint


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_error_in_any_batch_names_the_input_row_and_rolls_back(where: str) -> None:
    bad = {"first": 3, "middle": 1234, "last": 2498}[where]

    def rows() -> Any:
        for i in range(2500):
            yield item(i, quantity=None if i == bad else i)

    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(rows(), batch_size=500)
    assert (info.value.row, info.value.column) == (bad, "quantity")
    assert f"row {bad}" in str(info.value) and "null value" in str(info.value)
    assert isinstance(info.value, IntegrityError)
    assert Item.objects.count() == 0


def test_unique_violation_names_the_row() -> None:
    Item.objects.copy_from([item(0, sku="dup")])
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from([item(1, sku="ok"), item(2, sku="dup")])
    assert info.value.row == 1
    assert "already exists" in str(info.value)
    assert Item.objects.count() == 1


def test_foreign_key_violation_names_the_row(publisher: Publisher) -> None:
    rows = [item(0, publisher_id=publisher.pk), item(1, publisher_id=publisher.pk + 99)]
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(rows)
    assert (info.value.row, info.value.column) == (1, "publisher")
    assert "not present" in str(info.value)
    assert Item.objects.count() == 0


def test_outer_transaction_stays_usable() -> None:
    with transaction.atomic():
        Publisher.objects.create(name="kept")
        with pytest.raises(CopyError):
            Item.objects.copy_from([item(0), item(1, quantity=None)])
        Publisher.objects.create(name="also kept")
        Item.objects.copy_from([item(2)])
    assert Publisher.objects.count() == 2
    assert list(Item.objects.values_list("quantity", flat=True)) == [2]


def test_missing_required_field_is_refused() -> None:
    with pytest.raises(CopyIntegrityError, match="'quantity'") as info:
        Item.objects.copy_from([{"name": "a", "price": 1}])
    assert info.value.row == 0
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from([item(0), {"name": "b", "price": 1}])
    assert (info.value.row, info.value.column) == (1, "quantity")
    with pytest.raises(ValueError, match="quantity"):
        Item.objects.copy_from([("a", 1)], fields=["name", "price"])


def test_unknown_field_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="did you mean 'quantity'"):
        Item.objects.copy_from([{"name": "a", "quantty": 1, "price": 1}])
    with pytest.raises(CopyError, match="row 1"):
        Item.objects.copy_from([item(0), {**item(1), "colour": "red"}])
    assert Item.objects.count() == 0


@pytest.mark.parametrize(
    ("rows", "options", "error"),
    [
        ({"name": "a"}, {}, TypeError),
        (b"not a row", {}, TypeError),
        (42, {}, TypeError),
        ([1, 2], {}, TypeError),
        ([{}], {"batch_size": 0}, ValueError),
        ([{}], {"batch_size": "10"}, ValueError),
        ([{}], {"on_conflict": "replace"}, ValueError),
        ([{}], {"on_conflict": "update"}, ValueError),
        ([{}], {"fields": "name"}, TypeError),
        ([{}], {"unique_fields": ["sku"]}, ValueError),
        ([{}], {"return_ids": "yes"}, TypeError),
        ([{}], {"on_conflict": "ignore", "return_ids": True}, ValueError),
    ],
)
def test_wrong_arguments(rows: Any, options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        Item.objects.copy_from(rows, **options)


def test_wrong_row_type_in_instances() -> None:
    with pytest.raises(CopyError, match="row 1"):
        Item.objects.copy_from(
            [Item(name="a", quantity=1, price=1), Publisher(name="x")]
        )


def test_multi_table_inheritance_is_refused() -> None:
    with pytest.raises(TypeError, match="multi-table"):
        CopyQuerySet(model=Restaurant).copy_from([{"name": "x"}])


def test_psycopg2_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakePsycopg2:
        __name__ = "psycopg2"

    monkeypatch.setattr(connection, "Database", FakePsycopg2())
    with pytest.raises(ImproperlyConfigured, match="psycopg 3"):
        Item.objects.copy_from([item(0)])


def test_missing_privileges_leave_data_as_it_was() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dbtuning_copy_reader")
        cursor.execute("CREATE ROLE dbtuning_copy_reader")
        cursor.execute("GRANT SELECT ON copyapp_item TO dbtuning_copy_reader")
        cursor.execute("GRANT USAGE ON SCHEMA public TO dbtuning_copy_reader")
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL ROLE dbtuning_copy_reader")
            with pytest.raises(ProgrammingError, match="permission denied"):
                Item.objects.copy_from([item(0)])
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP OWNED BY dbtuning_copy_reader")
            cursor.execute("DROP ROLE dbtuning_copy_reader")
    assert Item.objects.count() == 0


def test_unreachable_database(settings: Any) -> None:
    conn = connections["other"]
    conn.close()
    real = conn.settings_dict["PORT"]
    conn.settings_dict["PORT"] = 1
    try:
        with pytest.raises(django.db.OperationalError):
            Item.objects.using("other").copy_from([item(0)])
    finally:
        conn.settings_dict["PORT"] = real
        conn.close()


# -- upsert --------------------------------------------------------------------------


def test_upsert_counts_and_last_wins() -> None:
    Item.objects.copy_from([item(1, sku="a", notes="old"), item(2, sku="b")])
    created_at = Item.objects.get(sku="a").created
    result = Item.objects.copy_from(
        [
            item(10, sku="a", notes="first"),
            item(11, sku="c"),
            item(12, sku="a", notes="last"),
        ],
        on_conflict="update",
        unique_fields=["sku"],
        return_ids=True,
    )
    assert (result.rows, result.created, result.updated) == (3, 1, 1)
    a = Item.objects.get(sku="a")
    assert (a.notes, a.quantity) == ("last", 12)
    assert a.created == created_at  # auto_now_add is not overwritten
    assert result.ids == [a.pk, Item.objects.get(sku="c").pk, a.pk]
    assert Item.objects.count() == 3


def test_upsert_update_fields_and_ignore() -> None:
    Item.objects.copy_from([item(1, sku="a", notes="keep")])
    result = Item.objects.copy_from(
        [item(5, sku="a", notes="drop")],
        on_conflict="update",
        unique_fields=["sku"],
        update_fields=["quantity"],
    )
    assert (result.created, result.updated) == (0, 1)
    assert Item.objects.values_list("quantity", "notes").get() == (5, "keep")
    result = Item.objects.copy_from(
        [item(9, sku="a"), item(9, sku="b")],
        on_conflict="ignore",
        unique_fields=["sku"],
        return_ids=True,
    )
    assert (result.created, result.updated) == (1, 0)
    assert result.ids == list(Item.objects.order_by("sku").values_list("pk", flat=True))
    result = Item.objects.copy_from(
        [item(9, sku="b"), item(9, sku="z")], on_conflict="ignore"
    )
    assert (result.created, result.updated) == (1, 0)


def test_upsert_composite_key_across_batches() -> None:
    rows = [{"left": i % 5, "right": 1, "note": str(i)} for i in range(23)]
    result = Pair.objects.copy_from(
        rows, on_conflict="update", unique_fields=["left", "right"], batch_size=4
    )
    assert (
        result.rows == 23
        and result.created == 5
        and result.updated == 23 - 5 - (result.rows - result.created - result.updated)
    )
    assert dict(Pair.objects.values_list("left", "note")) == {
        k: str(max(i for i in range(23) if i % 5 == k)) for k in range(5)
    }


def test_upsert_error_names_the_row() -> None:
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(
            [item(0, sku="a"), item(1, sku="b", quantity=None)],
            on_conflict="update",
            unique_fields=["sku"],
        )
    assert (info.value.row, info.value.column) == (1, "quantity")


# -- CSV -----------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Any, publisher: Publisher) -> None:
    Item.objects.copy_from(
        [
            item(
                1,
                tags=["a", "b"],
                data={"k": 'v, "quoted"'},
                notes="line\nbreak",
                publisher_id=publisher.pk,
            ),
            item(2, ratio=None, sku="S2", day=datetime.date(2024, 2, 3)),
        ]
    )
    path = tmp_path / "items.csv"
    fields = [
        "name",
        "notes",
        "quantity",
        "price",
        "ratio",
        "tags",
        "data",
        "publisher_id",
        "sku",
        "day",
    ]
    assert Item.objects.order_by("quantity").copy_to(path, fields=fields) == 2
    Item.objects.all().delete()
    result = Item.objects.copy_from(path)
    assert result.rows == 2
    one, two = Item.objects.order_by("quantity")
    assert one.tags == ["a", "b"] and one.data == {"k": 'v, "quoted"'}
    assert one.notes == "line\nbreak" and one.publisher_id == publisher.pk
    assert (
        two.ratio is None and two.sku == "S2" and two.day == datetime.date(2024, 2, 3)
    )
    assert one.created is not None  # auto_now_add filled for CSV too


def test_csv_file_objects_mapping_and_errors() -> None:
    text = "Title,Qty,Price,Ignored\nfirst,1,1.00,x\nsecond,2,2.00,y\n"
    mapping = {"Title": "name", "Qty": "quantity", "Price": "price", "Ignored": None}
    assert Item.objects.copy_from(io.StringIO(text), mapping=mapping).rows == 2
    assert Item.objects.copy_from(io.BytesIO(text.encode()), mapping=mapping).rows == 2
    assert Item.objects.count() == 4
    bad = "name,quantity,price\nok,1,1\nbad,lots,1\n"
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(io.StringIO(bad))
    assert (info.value.row, info.value.column) == (1, "quantity")
    with pytest.raises(ValueError, match="no field"):
        Item.objects.copy_from(io.StringIO("name,weight\na,1\n"))
    with pytest.raises(ValueError, match="header"):
        Item.objects.copy_from(io.StringIO(""))


# -- copy_to -------------------------------------------------------------------------


def test_copy_to_keeps_filters_ordering_and_annotations(publisher: Publisher) -> None:
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    Item.objects.copy_from([item(i, publisher_id=publisher.pk) for i in range(5)])
    qs = (
        Item.objects.filter(quantity__gte=2)
        .annotate(label=Concat("name", Value("!")), double=F("quantity") * 2)
        .order_by("-quantity")
    )
    data = qs.copy_to(fields=["double", "label", "publisher__name"])
    assert isinstance(data, bytes)
    assert data.decode().splitlines() == [
        "double,label,publisher__name",
        "8,item 4!,Acme",
        "6,item 3!,Acme",
        "4,item 2!,Acme",
    ]
    out = io.StringIO()
    assert Item.objects.filter(pk__in=[]).copy_to(out) == 0
    assert out.getvalue().startswith("id,name,notes")
    assert Item.objects.none().copy_to(header=False) == b""
    text = Item.objects.order_by("quantity").copy_to(
        fields=["quantity"], format="text", header=False
    )
    assert text == b"0\n1\n2\n3\n4\n"


def test_copy_to_wrong_arguments() -> None:
    with pytest.raises(ValueError, match="format"):
        Item.objects.copy_to(format="xml")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Item.objects.copy_to(fields="name")
    with pytest.raises(TypeError):
        Item.objects.copy_to(42)
    from django.core.exceptions import FieldError

    with pytest.raises(FieldError):
        Item.objects.copy_to(fields=["nope"])


# -- databases, queries, progress, async ---------------------------------------------


def test_using_and_routers(settings: Any) -> None:
    with CaptureQueriesContext(connections["other"]) as other:
        Item.objects.using("other").copy_from([item(1)])
        Item.objects.copy_from([item(2)], using="other")
    assert any(q["sql"].startswith("COPY") for q in other.captured_queries)
    assert Item.objects.using("other").count() == 2  # a mirror in tests
    assert (
        Item.objects.db_manager("other").filter(quantity=1).copy_to(fields=["quantity"])
        == b"quantity\n1\n"
    )


def test_execute_wrappers_see_the_copy() -> None:
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        Item.objects.copy_from([item(1)])
        Item.objects.copy_to()
    assert any(s.startswith('COPY "copyapp_item"') for s in seen)
    assert any(s.startswith("COPY (SELECT") for s in seen)


def test_progress_callback_and_bar(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []
    Item.objects.copy_from(
        (item(i) for i in range(10)), batch_size=4, progress=seen.append
    )
    assert seen == [4, 8, 10]
    Item.objects.copy_from([item(i) for i in range(3)], progress=True)
    assert "3/3" in capsys.readouterr().err


def test_async_twins() -> None:
    result = asyncio.run(Item.objects.acopy_from([item(1)]))
    assert result.rows == 1
    assert asyncio.run(Item.objects.acopy_to(fields=["quantity"])) == b"quantity\n1\n"
    # the worker thread has its own connection; close it so the test database can go
    asyncio.run(sync_to_async(connections.close_all)())


def test_memory_stays_flat_for_a_large_generator() -> None:
    tracemalloc.start()
    try:
        Item.objects.copy_from(
            ({"name": "n", "quantity": i, "price": 1} for i in range(50_000)),
            batch_size=5_000,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Item.objects.count() == 50_000
    assert peak < 40 * 1024 * 1024


def test_manager_check_flags_multi_table_inheritance() -> None:
    manager = CopyManager()
    manager.model = Restaurant
    ids = [m.id for m in manager.check()]
    assert "dbtuning.E040" in ids
    assert Item.objects.check() == []


def test_psycopg_is_what_runs() -> None:
    assert psycopg.__version__


class OtherRouter:
    """Sends copyapp writes and reads to the 'other' alias."""

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "other" if model._meta.app_label == "copyapp" else None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return "other" if model._meta.app_label == "copyapp" else None


def test_router_decides_the_alias_for_every_statement(settings: Any) -> None:
    settings.DATABASE_ROUTERS = [f"{__name__}.OtherRouter"]
    with (
        CaptureQueriesContext(connections["default"]) as default,
        CaptureQueriesContext(connections["other"]) as other,
    ):
        Item.objects.copy_from(
            [item(1, sku="a")], on_conflict="update", unique_fields=["sku"]
        )
        Item.objects.copy_to(fields=["sku"])
    assert default.captured_queries == []
    statements = [q["sql"] for q in other.captured_queries]
    assert any(s.startswith("CREATE TEMPORARY TABLE") for s in statements)
    assert any(s.startswith("COPY (SELECT") for s in statements)


@pytest.mark.parametrize("pg_version", [170000, None])
def test_upsert_counts_on_every_server_version(
    monkeypatch: pytest.MonkeyPatch, pg_version: int | None
) -> None:
    """PostgreSQL 18 reports created/updated with RETURNING OLD; older ones use xmax."""
    if pg_version is not None:
        monkeypatch.setattr(connection, "pg_version", pg_version)
    Item.objects.copy_from([item(1, sku="a")])
    result = Item.objects.copy_from(
        [item(2, sku="a"), item(3, sku="b")],
        on_conflict="update",
        unique_fields=["sku"],
    )
    assert (result.created, result.updated) == (1, 1)


def test_upsert_foreign_key_error_names_the_row(publisher: Publisher) -> None:
    rows = [
        item(0, sku="a", publisher_id=publisher.pk),
        item(1, sku="b", publisher_id=-5),
    ]
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(rows, on_conflict="update", unique_fields=["sku"])
    assert (info.value.row, info.value.column) == (1, "publisher")
    assert Item.objects.count() == 0


def test_upsert_sets_pks_on_instances() -> None:
    Item.objects.copy_from([item(0, sku="a")])
    existing = Item.objects.get()
    objs = [
        Item(name="x", quantity=5, price=PRICE, sku="a"),
        Item(name="y", quantity=6, price=PRICE, sku="b"),
    ]
    result = Item.objects.copy_from(
        objs, on_conflict="update", unique_fields=["sku"], return_ids=True
    )
    assert objs[0].pk == existing.pk and objs[1].pk is not None
    assert result.ids == [objs[0].pk, objs[1].pk]
    assert not objs[1]._state.adding


def test_explicit_pk_instances_mixed_with_new_ones() -> None:
    objs = [
        Item(id=500, name="a", quantity=1, price=PRICE),
        Item(name="b", quantity=2, price=PRICE),
    ]
    result = Item.objects.copy_from(objs, return_ids=True)
    assert result.ids is not None and result.ids[0] == 500 and objs[1].pk is not None
    assert Item.objects.create(name="c", quantity=3, price=PRICE).pk > 500


def test_manager_check_flags_psycopg2(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakePsycopg2:
        __name__ = "psycopg2"

    monkeypatch.setattr(connection, "Database", FakePsycopg2())
    messages = Item.objects.check(databases=["default"])
    assert [m.id for m in messages] == ["dbtuning.E041"]
    assert "psycopg 3" in messages[0].msg


@pytest.mark.parametrize(
    "tags",
    [
        ["a", "b"],
        [],
        ["", "ünïcødé", "tab\there", "quote\"'", "x" * 10],
        ["a", None],
        [None],
        [["a", "b"], ["c", "d"]],
        ("t", "u"),
    ],
)
def test_text_arrays_round_trip(tags: Any) -> None:
    Item.objects.copy_from([item(0, tags=tags)])
    # tags is one-dimensional: as bulk_create does, a list item goes through
    # CharField.to_python (str()), instead of becoming a second dimension.
    expected = (
        [str(t) for t in tags] if tags and isinstance(tags[0], list) else list(tags)
    )
    assert Item.objects.get().tags == expected


def test_copy_to_text_file_and_encoding() -> None:
    Item.objects.copy_from([item(0, name="café ñ " + "é" * 10)])
    out = io.StringIO()
    assert Item.objects.copy_to(out, fields=["name"], header=False) == 1
    assert out.getvalue() == "café ñ " + "é" * 10 + "\n"
    data = Item.objects.copy_to(fields=["name"], header=False, encoding="latin-1")
    assert data == ("café ñ " + "é" * 10 + "\n").encode("latin-1")


def test_return_ids_when_the_sequence_is_not_contiguous() -> None:
    """Concurrent writers (here: INCREMENT BY 3) leave gaps; ids still match rows."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence('copyapp_item', 'id')")
        (sequence,) = cursor.fetchone()
        cursor.execute(f"ALTER SEQUENCE {sequence} INCREMENT BY 3")
    try:
        result = Item.objects.copy_from([item(i) for i in range(5)], return_ids=True)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER SEQUENCE {sequence} INCREMENT BY 1")
    assert result.ids is not None
    assert [b - a for a, b in itertools.pairwise(result.ids)] == [3, 3, 3, 3]
    stored = dict(Item.objects.values_list("pk", "quantity"))
    assert [stored[pk] for pk in result.ids] == list(range(5))


def test_instances_get_pre_save_like_bulk_create() -> None:
    objs = [Custom(shout="hi"), Custom(shout="there")]
    Custom.objects.copy_from(objs)
    assert sorted(Custom.objects.values_list("shout", flat=True)) == ["HI!", "THERE!"]
    assert [o.shout for o in objs] == ["hi!", "there!"]


def test_unknown_alias_and_bad_field_names() -> None:
    from django.utils.connection import ConnectionDoesNotExist

    with pytest.raises(ConnectionDoesNotExist):
        Item.objects.copy_from([item(0)], using="nowhere")
    with pytest.raises(TypeError, match="field names must be strings"):
        Item.objects.copy_from([("a", 1, 2)], fields=["name", 1, "price"])
    with pytest.raises(ValueError, match="given twice"):
        Item.objects.copy_from(
            [(1, 1, 1, 1)], fields=["name", "quantity", "price", "name"]
        )
    assert Item.objects.count() == 0


def test_progress_accepts_a_bar_object() -> None:
    class Bar:
        def __init__(self) -> None:
            self.n = 0

        def update(self, n: int) -> None:
            self.n += n

    bar = Bar()
    Item.objects.copy_from((item(i) for i in range(7)), batch_size=3, progress=bar)
    assert bar.n == 7
    with pytest.raises(TypeError, match="progress"):
        Item.objects.copy_from([item(0)], progress="yes")


def test_upsert_on_a_partial_unique_constraint() -> None:
    """ON CONFLICT (code) must repeat the index predicate (WHERE active) to match it."""
    from tests.copyapp.models import Slot

    Slot.objects.copy_from(
        [{"code": "a", "note": "old"}, {"code": "a", "active": False}]
    )
    result = Slot.objects.copy_from(
        [{"code": "a", "note": "new"}, {"code": "b", "note": "b"}],
        on_conflict="update",
        unique_fields=["code"],
        update_fields=["note"],
    )
    assert (result.created, result.updated) == (1, 1)
    assert sorted(Slot.objects.values_list("code", "active", "note")) == [
        ("a", False, ""),
        ("a", True, "new"),
        ("b", True, "b"),
    ]


def test_staging_tables_are_dropped_even_inside_a_transaction() -> None:
    def staging_tables() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'dbtuning_copy_%%' "
                "AND relpersistence = 't'"
            )
            (count,) = cursor.fetchone()
        return int(count)

    with transaction.atomic():
        for _ in range(3):
            Item.objects.copy_from(
                [item(0, sku="a")], on_conflict="update", unique_fields=["sku"]
            )
        with pytest.raises(CopyError):
            Item.objects.copy_from(
                [item(0, sku="a", quantity=None)],
                on_conflict="update",
                unique_fields=["sku"],
            )
        assert staging_tables() == 0
    assert Item.objects.count() == 1


@pytest.mark.parametrize("fmt", ["csv", "text", "binary"])
def test_format_is_one_keyword_on_both_sides(fmt: str) -> None:
    # A client project saw copy_from(..., format="csv") refused: format= is the one spelling
    # on copy_to, copy_from and their async twins, and what one writes the other reads.
    Item.objects.copy_from([item(i) for i in range(3)])
    fields = ["name", "quantity", "price"]
    data = Item.objects.order_by("quantity").copy_to(format=fmt, fields=fields)
    assert isinstance(data, bytes)
    Item.objects.all().delete()
    names = {"fields": fields} if fmt == "binary" else {}
    assert Item.objects.copy_from(io.BytesIO(data), format=fmt, **names).rows == 3
    assert (
        asyncio.run(Item.objects.acopy_from(io.BytesIO(data), format=fmt, **names)).rows
        == 3
    )
    ordered = Item.objects.order_by("quantity", "pk")
    again = asyncio.run(ordered.acopy_to(format=fmt, fields=fields))
    asyncio.run(sync_to_async(connections.close_all)())
    assert again == ordered.copy_to(format=fmt, fields=fields)
    assert list(ordered.values_list("quantity", flat=True)) == [0, 0, 1, 1, 2, 2]


def test_a_wrong_format_is_refused_alike_on_both_sides() -> None:
    with pytest.raises(
        ValueError, match="format must be 'csv', 'text' or 'binary', not 'CSV'"
    ):
        Item.objects.copy_to(format="CSV")
    with pytest.raises(
        ValueError, match="format must be 'csv', 'text' or 'binary', not 'CSV'"
    ):
        Item.objects.copy_from([item(1)], format="CSV")
    with pytest.raises(TypeError, match="file_format"):
        Item.objects.copy_from([item(1)], file_format="csv")
    assert not Item.objects.exists()
