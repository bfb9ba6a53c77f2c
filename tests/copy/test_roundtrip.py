"""copy_to -> copy_from keeps every value, in every format copy_to writes.

Rows go in with bulk_create (Django's own path, independent of COPY), come out with
copy_to, go back with copy_from into the emptied table, and must read back identical.
"""

from __future__ import annotations

import datetime
import decimal
import io
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.copyapp.models import Item, Sample

# Each test runs in a transaction that is rolled back afterwards.
pytestmark = pytest.mark.django_db

FORMATS = ["csv", "text", "binary"]
FIELDS = [
    f.attname
    for f in Sample._meta.concrete_fields  # the order copy_to writes them in
]
# Characters that split lines somewhere (str.splitlines, codecs readers, text COPY), the
# NULL markers of every format, quoting and escaping.
SPECIAL = [
    "",
    " ",
    "\\N",
    "\\",
    "\\\\N",
    "NULL",
    '"',
    '""',
    ",",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\ufeff",
    " lead",
    "trail ",
    "é",
    "😀",
]
characters = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
texts = st.one_of(
    st.sampled_from(SPECIAL),
    st.lists(st.sampled_from(SPECIAL), max_size=6).map("".join),
    st.text(characters, max_size=30),
)
int32 = st.integers(-(2**31), 2**31 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3)
    ),
    max_leaves=8,
)
samples = st.builds(
    Sample,
    text=texts,
    maybe=st.none() | texts,
    short=st.none() | texts.map(lambda t: t[:30]),
    number=st.none() | int32,
    big=st.none() | st.integers(-(2**63), 2**63 - 1),
    small=st.none() | st.integers(-(2**15), 2**15 - 1),
    amount=st.none()
    | st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False),
    ratio=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    flag=st.none() | st.booleans(),
    day=st.none() | st.dates(),
    moment=st.none()
    | st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=st.just(datetime.UTC),
    ),
    clock=st.none() | st.times(),
    span=st.none()
    | st.timedeltas(
        min_value=datetime.timedelta(days=-(10**6)),
        max_value=datetime.timedelta(days=10**6),
    ),
    ident=st.none() | st.uuids(),
    doc=json_values,
    words=st.none() | st.lists(st.none() | texts, max_size=4),
    numbers=st.none() | st.lists(int32, max_size=4),
    blob=st.none() | st.binary(max_size=20),
)


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def stored() -> list[tuple[Any, ...]]:
    rows = Sample.objects.order_by("pk").values_list(*FIELDS)
    return [tuple(_comparable(v) for v in row) for row in rows]


def round_trip(fmt: str) -> None:
    data = Sample.objects.order_by("pk").copy_to(format=fmt)  # type: ignore[arg-type]
    assert isinstance(data, bytes)
    Sample.objects.all().delete()
    options: dict[str, Any] = {"format": fmt}
    if fmt == "binary":
        options["fields"] = FIELDS
    Sample.objects.copy_from(io.BytesIO(data), **options)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(samples, min_size=1, max_size=5), fmt=st.sampled_from(FORMATS))
@example(rows=[Sample(maybe=""), Sample(maybe=None)], fmt="csv")
@example(rows=[Sample(text="\\N", maybe="\\N", words=["\\N", None, ""])], fmt="text")
def test_copy_to_then_copy_from_keeps_every_value(rows: list[Sample], fmt: str) -> None:
    Sample.objects.all().delete()
    Sample.objects.bulk_create(rows)
    before = stored()
    round_trip(fmt)
    assert stored() == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_string_and_null_stay_apart(fmt: str) -> None:
    """A nullable text column holds "" and NULL; both survive every format."""
    Sample.objects.bulk_create(
        [
            Sample(text="", maybe="", short=None, words=["", None]),
            Sample(text="x", maybe=None, short="", words=[]),
        ]
    )
    before = stored()
    round_trip(fmt)
    assert stored() == before
    assert list(Sample.objects.order_by("pk").values_list("maybe", "short")) == [
        ("", None),
        (None, ""),
    ]


@pytest.mark.parametrize("fmt", ["csv"])
def test_a_null_marker_of_your_own_round_trips(fmt: str) -> None:
    """copy_to(null="NULL") quotes a value "NULL" in CSV; copy_from(null=) reads it.

    (Text format has no quoting: PostgreSQL writes a value equal to a custom NULL
    string as it is, so only the default ``\\N`` is unambiguous there.)"""
    Sample.objects.bulk_create(
        [Sample(text="NULL", maybe=None, short="NULL"), Sample(text="", maybe="")]
    )
    before = stored()
    data = Sample.objects.order_by("pk").copy_to(format=fmt, null="NULL")  # type: ignore[arg-type]
    assert isinstance(data, bytes)
    Sample.objects.all().delete()
    Sample.objects.copy_from(io.BytesIO(data), format=fmt, null="NULL")  # type: ignore[arg-type]
    assert stored() == before


def test_csv_null_rule_for_other_writers() -> None:
    """Files written elsewhere: unquoted empty is NULL, quoted empty is ""; an empty
    cell in a NOT NULL text column is "" (what Django stores)."""
    text = 'text,maybe,short,number\n,,"",\n"","",,""\n'
    Sample.objects.copy_from(io.StringIO(text))
    assert list(
        Sample.objects.order_by("pk").values_list("text", "maybe", "short", "number")
    ) == [("", None, "", None), ("", "", None, None)]


def test_a_very_long_value_loads_and_round_trips() -> None:
    huge = "x" * 300_000 + "\u2028" + "y" * 200_000  # over csv's 128 KiB cell limit
    Sample.objects.bulk_create([Sample(text=huge, maybe=huge)])
    before = stored()
    for fmt in FORMATS:
        round_trip(fmt)
        assert stored() == before


@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_pg_formats_fill_defaults_and_refuse_nan(fmt: str) -> None:
    """A partial text/binary file gets Django's defaults, and the same checks as dicts."""
    Item.objects.copy_from(
        [{"name": "a", "quantity": 1, "price": decimal.Decimal("1.5")}]
    )
    data = Item.objects.copy_to(
        format=fmt,  # type: ignore[arg-type]
        fields=["name", "quantity", "price"],
    )
    assert isinstance(data, bytes)
    options: dict[str, Any] = {"format": fmt}
    if fmt == "binary":
        options["fields"] = ["name", "quantity", "price"]
    result = Item.objects.copy_from(io.BytesIO(data), return_ids=True, **options)
    assert result.rows == 1 and result.ids is not None
    copy = Item.objects.get(pk=result.ids[0])
    assert (copy.name, copy.price, copy.data, copy.tags) == (
        "a",
        decimal.Decimal("1.50"),
        {},
        [],
    )
    assert isinstance(copy.reference, uuid.UUID) and copy.created is not None


def test_text_file_upsert_updates_by_key() -> None:
    Item.objects.copy_from(
        [{"name": "old", "quantity": 1, "price": 1, "sku": "a", "extra": {"n": 1.10}}]
    )
    data = b'name\tquantity\tprice\tsku\textra\nnew\t2\t2.5\ta\t{"n": 1.10}\nb\t3\t3\tb\t\\N\n'
    result = Item.objects.copy_from(
        io.BytesIO(data), format="text", on_conflict="update", unique_fields=["sku"]
    )
    assert (result.created, result.updated) == (1, 1)
    assert sorted(Item.objects.values_list("sku", "name", "quantity", "extra")) == [
        ("a", "new", 2, {"n": 1.1}),
        ("b", "b", 3, None),
    ]
