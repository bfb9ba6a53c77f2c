"""Issue 9 (data integrity): CSV decoding and reading, values Django refuses, upserts.

One regression test per reported case, from the user's side (copy_from on real
PostgreSQL), plus a property test of the CSV reader against the csv module.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import math
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from django_dbtuning import CopyDataError, CopyError, CopyIntegrityError
from tests.copyapp.models import Item, Publisher, Sample, Slot

# Rolled back after each test (no threads here but one, which commits).
pytestmark = pytest.mark.django_db

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


def item(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"item {i}", "quantity": i, "price": 1, **extra}


def names() -> list[str]:
    return list(Publisher.objects.order_by("pk").values_list("name", flat=True))


# -- 1. a CSV row is what the CSV dialect says it is -----------------------------------


@pytest.mark.parametrize("separator", SEPARATORS)
def test_binary_csv_is_not_split_at_unicode_line_breaks(separator: str) -> None:
    """codecs.getreader ended lines at these: 'Acme\\u2028Corp' became two rows."""
    data = f"name\nAcme{separator}Corp\nnext\n".encode()
    assert Publisher.objects.copy_from(io.BytesIO(data)).rows == 2
    assert names() == [f"Acme{separator}Corp", "next"]


def test_every_file_input_reads_the_same_rows(tmp_path: Path) -> None:
    value = 'Acme\u2028"Corp",\r\nline\x85two'
    path = tmp_path / "p.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([["name"], [value]])
    data = path.read_bytes()

    class Reader:  # an object with read() only, like many upload wrappers
        def __init__(self) -> None:
            self.data = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self.data.read(n)

    binary = path.open("rb")
    inputs: list[Any] = [
        path,
        str(path),
        io.BytesIO(data),
        binary,
        Reader(),
        io.StringIO(data.decode()),
        path.open(encoding="utf-8", newline=""),
        # Without newline="" a text file turns "\r\n" inside quotes into "\n".
        path.open(encoding="utf-8"),
    ]
    for source in inputs:
        Publisher.objects.all().delete()
        assert Publisher.objects.copy_from(source).rows == 1, source
        assert names() == [value], source
    # The caller's file objects stay open: they are the caller's to close.
    assert not binary.closed
    binary.close()
    for source in inputs[6:]:
        source.close()


def test_django_file_objects_read_the_same_rows() -> None:
    """Django's File.__iter__ splits lines with str.splitlines (at \u2028 too)."""
    from django.core.files.base import ContentFile, File

    for source in [
        File(io.StringIO("name\nAcme\u2028Corp\n")),
        ContentFile("name\nAcme\u2028Corp\n".encode()),
    ]:
        Publisher.objects.all().delete()
        assert Publisher.objects.copy_from(source).rows == 1
        assert names() == ["Acme\u2028Corp"]


def test_lines_as_strings_are_refused() -> None:
    with pytest.raises(TypeError, match="each row must be"):
        Publisher.objects.copy_from(["name", "Acme"])


# -- 3. values Django's save() refuses are refused, naming row and column --------------


@pytest.mark.parametrize(
    "bad",
    [
        decimal.Decimal("NaN"),
        decimal.Decimal("-NaN"),
        decimal.Decimal("sNaN"),
        decimal.Decimal("Infinity"),
        decimal.Decimal("-Infinity"),
        float("nan"),
        float("inf"),
        "NaN",
        "Infinity",
    ],
)
def test_decimal_nan_and_infinity_are_refused(bad: Any) -> None:
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from([item(0), item(1, price=bad)])
    assert (info.value.row, info.value.column) == (1, "price")
    assert "row 1, column 'price'" in str(info.value)
    assert Item.objects.count() == 0


@pytest.mark.parametrize("fmt", ["csv", "text"])
def test_decimal_nan_in_files_is_refused(fmt: str) -> None:
    if fmt == "csv":
        source: Any = io.StringIO("name,quantity,price\na,1,1\nb,2, nan \n")
    else:
        source = io.BytesIO(b"name\tquantity\tprice\na\t1\t1\nb\t2\tNaN\n")
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(source, format=fmt)  # type: ignore[arg-type]
    assert (info.value.row, info.value.column) == (1, "price")
    assert Item.objects.count() == 0


def test_decimal_arrays_refuse_nan() -> None:
    from django.contrib.postgres.fields import ArrayField
    from django.db import models

    from django_dbtuning.copy.converters import items_need_django

    assert items_need_django(ArrayField(ArrayField(models.DecimalField())))
    # psycopg's C dumpers store a str or a datetime item of these as garbage, cut a
    # datetime to its UTC date, or read any object as a bool.
    assert items_need_django(ArrayField(models.TimeField()))
    assert items_need_django(ArrayField(models.DateField()))
    assert items_need_django(ArrayField(models.BooleanField()))
    assert items_need_django(ArrayField(ArrayField(models.DurationField())))
    assert not items_need_django(ArrayField(models.IntegerField()))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", decimal.Decimal("1.23456")),  # rounded to 4 places by PostgreSQL
        ("amount", 2.5),
        ("ratio", float("nan")),  # Django stores NaN and infinities in a FloatField
        ("ratio", float("-inf")),
        ("number", 7.9),  # Django's int() truncates
        ("number", "12"),
        ("flag", "False"),
        ("flag", 1),
        ("ident", str(uuid.UUID(int=5))),
        ("ident", "{" + str(uuid.UUID(int=6)) + "}"),
        ("day", datetime.datetime(2024, 5, 6, 23, 30, tzinfo=datetime.UTC)),
        ("doc", {"nested": [1.10, None, "x"]}),
        # psycopg's C binary dumpers read any object as a time / timedelta: these
        # were stored as garbage (a random interval, "time out of range").
        ("clock", "10:11"),
        ("clock", datetime.datetime(2024, 5, 6, 10, 11, 12)),
        ("span", "01:02:03"),
        ("span", "1 day"),
    ],
)
def test_values_django_accepts_are_stored_as_django_stores_them(
    field: str, value: Any
) -> None:
    Sample.objects.bulk_create([Sample(**{field: value})])
    expected = Sample.objects.values_list(field, flat=True).get()
    Sample.objects.all().delete()
    Sample.objects.copy_from([{field: value}])
    stored = Sample.objects.values_list(field, flat=True).get()
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(stored)
    else:
        assert stored == expected


@pytest.mark.parametrize(
    ("bad", "column"),
    [
        ({"big": 2**63}, "big"),
        ({"small": 2**15}, "small"),
        ({"number": float("nan")}, "number"),
        ({"flag": "yes"}, "flag"),  # PostgreSQL says true, Django refuses
        ({"flag": "on"}, "flag"),
        ({"ident": "urn:uuid:nonsense"}, "ident"),
        ({"text": "NUL \x00 inside"}, "text"),
        ({"maybe": "lone \udcff surrogate"}, "maybe"),
        ({"doc": {"a": float("nan")}}, "doc"),  # JSON has no NaN
        ({"doc": "\x00"}, "doc"),
        ({"short": "x" * 31}, "short"),
        ({"numbers": [2**31]}, "numbers"),
        ({"span": "forever"}, "span"),
        ({"span": datetime.time(1, 0)}, "span"),
        ({"clock": 5}, "clock"),
    ],
)
def test_values_django_or_postgresql_refuse_name_row_and_column(
    bad: dict[str, Any], column: str
) -> None:
    with pytest.raises(CopyError) as info:
        Sample.objects.copy_from([{"text": "ok"}, {"text": "ok", **bad}])
    assert (info.value.row, info.value.column) == (1, column)
    assert Sample.objects.count() == 0


@pytest.mark.parametrize(
    ("header", "cell", "column"),
    [
        ("day", "10000-01-01", "day"),  # PostgreSQL stores it, Python cannot read it
        ("day", "infinity", "day"),
        ("day", "0044-03-15 BC", "day"),
        ("moment", "infinity", "moment"),
        ("moment", "now", "moment"),
        ("flag", "yes", "flag"),
        ("flag", "of", "flag"),
        ("number", "0x1F", "number"),
        ("number", "1.5", "number"),
        ("ident", "not-a-uuid", "ident"),
        ("doc", "NaN", "doc"),
        ("amount", "-Infinity", "amount"),
        ("span", "forever", "span"),
    ],
)
def test_csv_cells_are_held_to_what_django_accepts(
    header: str, cell: str, column: str
) -> None:
    text = f"text,{header}\nok,\nok,{cell}\n"
    with pytest.raises(CopyError) as info:
        Sample.objects.copy_from(io.StringIO(text))
    assert (info.value.row, info.value.column) == (1, column)
    assert "CSV line 3" in str(info.value) or "line 3" in str(info.value)
    assert Sample.objects.count() == 0


@pytest.mark.parametrize(
    "cell", ["infinity", "-infinity", "10000-01-01", "0001-01-01 BC"]
)
def test_text_format_dates_python_cannot_read_are_refused(cell: str) -> None:
    data = f"text\tday\nok\t2024-01-01\nok\t{cell}\n".encode()
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from(io.BytesIO(data), format="text")
    assert (info.value.row, info.value.column) == (1, "day")


@override_settings(TIME_ZONE="Europe/Paris")
def test_naive_csv_datetimes_are_made_aware_like_save() -> None:
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        Sample.objects.copy_from(io.StringIO("text,moment\na,2024-01-01 12:00\n"))
    stored = Sample.objects.values_list("moment", flat=True).get()
    assert stored == datetime.datetime(2024, 1, 1, 11, 0, tzinfo=datetime.UTC)


def test_csv_booleans_django_accepts() -> None:
    Sample.objects.copy_from(
        io.StringIO("text,flag\na,True\nb,f\nc,1\nd,\n"), batch_size=2
    )
    assert list(Sample.objects.order_by("text").values_list("flag", flat=True)) == [
        True,
        False,
        True,
        None,
    ]


# -- 4. CSV: BOM, decoding, cell size, errors that name the row and the header ---------


def test_a_bom_is_stripped_from_every_kind_of_input(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfname\nAcme\n")
    with path.open(encoding="utf-8") as text:
        for source in [
            path,
            io.BytesIO(b"\xef\xbb\xbfname\nAcme\n"),
            io.StringIO("\ufeffname\nAcme\n"),
            text,
        ]:
            Publisher.objects.all().delete()
            Publisher.objects.copy_from(source)
            assert names() == ["Acme"]


def test_undecodable_bytes_name_row_line_byte_and_column(tmp_path: Path) -> None:
    data = b"name,quantity,price\nok,1,1\nbad \xff here,2,1\n"
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    for source in [io.BytesIO(data), path]:
        with pytest.raises(CopyDataError) as info:
            Item.objects.copy_from(source)
        error = info.value
        assert (error.row, error.column) == (1, "name")
        assert "line 3" in str(error) and "0xff" in str(error)
        assert not isinstance(error.__cause__, UnicodeDecodeError)
    with path.open(encoding="utf-8") as strict, pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(strict)
    assert (info.value.row, info.value.column) == (1, "name")
    assert "line 3" in str(info.value) and "0xff" in str(info.value)
    assert Item.objects.count() == 0


def test_another_encoding_is_decoded() -> None:
    data = "name\ncafé\n".encode("latin-1")
    Publisher.objects.copy_from(io.BytesIO(data), encoding="latin-1")
    assert names() == ["café"]


@pytest.mark.django_db(transaction=True)
def test_a_cell_over_the_csv_field_limit_loads_and_the_limit_comes_back() -> None:
    limit = csv.field_size_limit()
    huge = "x" * (limit + 1000)
    results: list[Any] = []

    def load(i: int) -> None:
        try:
            data = f"text\n{huge}\n{i}\n"
            results.append(Sample.objects.copy_from(io.StringIO(data)).rows)
        except BaseException as exc:
            results.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=load, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2, 2, 2]
    assert Sample.objects.filter(text=huge).count() == 3
    assert csv.field_size_limit() == limit


@pytest.mark.parametrize(
    ("text", "row", "needle"),
    [
        ("name,quantity,price\na,1,1\nb,2\n", 1, "expected 3 cells like the header"),
        ("name,quantity,price\na,1,1\nb\x00,1,1\n", 1, "NUL"),
        ('name,quantity,price\na,1,1\n"b,2,1\n', 1, "line"),
    ],
)
def test_csv_errors_name_the_row(text: str, row: int, needle: str) -> None:
    with pytest.raises(CopyError) as info:
        Item.objects.copy_from(io.StringIO(text))
    assert info.value.row == row
    assert needle in str(info.value)
    assert "fields=" not in str(info.value)


def test_csv_errors_say_the_header_name_and_line() -> None:
    text = "Title,Qty,Price\nfirst,1,1\nsecond,lots,2\n"
    mapping = {"Title": "name", "Qty": "quantity", "Price": "price"}
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(io.StringIO(text), mapping=mapping)
    assert (info.value.row, info.value.column) == (1, "quantity")
    assert "row 1 (CSV line 3), column 'Qty' (field 'quantity')" in str(info.value)
    text = "Title,Qty,Price\nfirst,1,1\n" + "x" * 25 + ",2,2\n"
    with pytest.raises(CopyDataError) as info:
        Item.objects.copy_from(io.StringIO(text), mapping=mapping, batch_size=1)
    assert "row 1 (CSV line 3), column 'Title' (field 'name')" in str(info.value)
    assert "value too long" in str(info.value)


cells = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=8,
) | st.sampled_from(["", '"', '""', ",", "\r\n", "\r", "\n", " ", "\u2028"])


def pg_csv_field(cell: str | None, quote: bool) -> str:
    """A field as PostgreSQL's COPY TO writes it: NULL bare, "" always quoted."""
    if cell is None:
        return ""
    needs = cell == "" or any(c in cell for c in ',"\r\n')
    if needs or quote:
        return '"' + cell.replace('"', '""') + '"'
    return cell


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 4),
    data=st.data(),
    terminator=st.sampled_from(["\n", "\r\n"]),
)
def test_the_csv_reader_reads_postgresql_csv_exactly(
    width: int, data: st.DataObject, terminator: str
) -> None:
    """Unquoted empty cells are None, quoted ones "", the rest is the csv module's."""
    from django_dbtuning.copy.csvinput import CsvReader

    row = st.lists(
        st.tuples(st.none() | cells, st.booleans()), min_size=width, max_size=width
    )
    rows = data.draw(st.lists(row, min_size=1, max_size=4))
    text = "".join(
        ",".join(pg_csv_field(c, q) for c, q in r) + terminator for r in rows
    )
    reader = CsvReader(
        io.StringIO(text), delimiter=",", quotechar='"', encoding="utf-8"
    )
    reader.width = width
    reader.nulls_in(range(width))
    got = list(reader)
    assert got == [[c for c, _ in r] for r in rows]
    expected = list(csv.reader(io.StringIO(text)))
    assert [["" if c is None else c for c in r] for r in got] == [
        r or [""] for r in expected
    ]


# -- 5. upserts: one statement per load ------------------------------------------------


def test_duplicate_keys_across_batches_collapse_to_the_last() -> None:
    rows = [item(i, sku=f"s{i % 3}", notes=str(i)) for i in range(10)]
    result = Item.objects.copy_from(
        rows,
        on_conflict="update",
        unique_fields=["sku"],
        batch_size=4,
        return_ids=True,
    )
    assert (result.rows, result.created, result.updated) == (10, 3, 0)
    final = dict(Item.objects.values_list("sku", "notes"))
    assert final == {"s0": "9", "s1": "7", "s2": "8"}
    pks = dict(Item.objects.values_list("sku", "pk"))
    assert result.ids == [pks[f"s{i % 3}"] for i in range(10)]


def test_upsert_instances_get_ids_across_batches() -> None:
    Item.objects.copy_from([item(0, sku="s3")])
    objs = [Item(name="n", quantity=i, price=1, sku=f"s{i}") for i in range(7)]
    result = Item.objects.copy_from(
        objs, on_conflict="update", unique_fields=["sku"], batch_size=3, return_ids=True
    )
    pks = dict(Item.objects.values_list("sku", "pk"))
    assert [o.pk for o in objs] == [pks[f"s{i}"] for i in range(7)] == result.ids
    assert all(not o._state.adding for o in objs)
    assert (result.created, result.updated) == (6, 1)


def test_upsert_keeps_rows_outside_a_partial_unique_index() -> None:
    """An inactive row never conflicts: it must not collapse with an active one."""
    result = Slot.objects.copy_from(
        [
            {"code": "a", "active": False, "note": "old"},
            {"code": "a", "active": True, "note": "live"},
            {"code": "a", "active": False, "note": "older"},
        ],
        on_conflict="update",
        unique_fields=["code"],
        update_fields=["note"],
    )
    assert result.created == 3
    assert sorted(Slot.objects.values_list("active", "note")) == [
        (False, "old"),
        (False, "older"),
        (True, "live"),
    ]


def test_upsert_with_some_explicit_ids() -> None:
    result = Item.objects.copy_from(
        [item(0, sku="a", id=9000), item(1, sku="b")],
        on_conflict="update",
        unique_fields=["sku"],
        return_ids=True,
    )
    assert result.ids is not None and result.ids[0] == 9000 and result.ids[1] > 0
    assert Item.objects.create(name="c", quantity=1, price=1).pk > 9000


@pytest.mark.parametrize(
    ("bad", "column"),
    [({"stock": -1}, None), ({"reference": uuid.UUID(int=1)}, "reference")],
)
def test_upsert_constraint_errors_name_the_row(
    bad: dict[str, Any], column: str | None
) -> None:
    Item.objects.copy_from([item(0, sku="z", reference=uuid.UUID(int=1))])
    rows = [item(i, sku=f"s{i}") for i in range(6)]
    rows[4].update(bad)
    with pytest.raises(CopyIntegrityError) as info:
        Item.objects.copy_from(
            rows, on_conflict="update", unique_fields=["sku"], batch_size=2
        )
    assert info.value.row == 4
    if column:
        assert info.value.column == column
    assert Item.objects.count() == 1
