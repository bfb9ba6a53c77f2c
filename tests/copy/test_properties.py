"""Generated cases for the families the hostile pass opened: a generator finds the next one.

* upserts: every row's id and which duplicate wins, against a row-by-row model of
  ``ON CONFLICT``, with a partial unique index, across batches;
* arrays: whatever copy_from stores, ``bulk_create`` stores the same;
* durations: whatever copy_from reads from a CSV cell, PostgreSQL reads the same;
* text files already read from: the rows are exactly what was written, CR/LF included;
* table names: any name loads, or is refused in one line before any statement.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext, isolate_apps
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from django_dbtuning import CopyDataError, CopyError, CopyIntegrityError
from django_dbtuning.copy import CopyManager
from django_dbtuning.copy.names import helper_name, shown
from tests.copyapp.models import Sample, Shapes, Slot

pytestmark = pytest.mark.django_db

SOME = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class _Rollback(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


def outcome(load: Any, read: Any) -> tuple[str, Any]:
    """("stored", what ``read`` returns) or ("refused", None); nothing is kept."""
    try:
        with transaction.atomic():
            load()
            raise _Rollback(read())
    except _Rollback as done:
        return "stored", done.value
    except Exception:
        return "refused", None


# -- upserts: ids and winners ----------------------------------------------------------

codes = st.sampled_from("abc")


@SOME
@given(
    existing=st.lists(st.tuples(codes, st.booleans()), max_size=4),
    rows=st.lists(st.tuples(codes, st.booleans()), min_size=1, max_size=10),
    on_conflict=st.sampled_from(["update", "ignore"]),
    batch_size=st.integers(1, 4),
)
@example(
    existing=[("a", True)],
    rows=[("a", True), ("a", False), ("a", False), ("a", True)],
    on_conflict="update",
    batch_size=2,
)
def test_upsert_ids_and_winners_follow_on_conflict_row_by_row(
    existing: list[tuple[str, bool]],
    rows: list[tuple[str, bool]],
    on_conflict: str,
    batch_size: int,
) -> None:
    """Slot: one active row per code (a partial unique index); inactive rows never
    conflict. ``update`` leaves a code's last active row, ``ignore`` its first (or the
    row already there); every inactive row is inserted with its own id."""
    Slot.objects.all().delete()
    active: dict[str, int] = {}
    expected: Counter[tuple[str, bool, str]] = Counter()
    for i, (code, is_active) in enumerate(existing):
        if is_active and code in active:
            continue
        slot = Slot.objects.create(code=code, active=is_active, note=f"old{i}")
        if is_active:
            active[code] = slot.pk
        expected[(code, is_active, f"old{i}")] += 1
    winners: dict[str, str] = {}
    for i, (code, is_active) in enumerate(rows):
        note = f"new{i}"
        if not is_active:
            expected[(code, False, note)] += 1
        elif on_conflict == "update" or (code not in active and code not in winners):
            winners[code] = note
    for code, note in winners.items():
        old = [k for k in expected if k[0] == code and k[1]]
        if old:
            del expected[old[0]]
        expected[(code, True, note)] += 1
    result = Slot.objects.copy_from(
        [{"code": c, "active": a, "note": f"new{i}"} for i, (c, a) in enumerate(rows)],
        on_conflict=on_conflict,
        unique_fields=["code"],
        return_ids=True,
        batch_size=batch_size,
    )
    stored = {pk: (c, a, n) for pk, c, a, n in Slot.objects.values_list()}
    assert Counter(stored.values()) == expected
    assert result.ids is not None
    inactive_ids = [pk for pk, (_, a) in zip(result.ids, rows, strict=True) if not a]
    assert len(set(inactive_ids)) == len(inactive_ids)
    for i, (pk, (code, is_active)) in enumerate(zip(result.ids, rows, strict=True)):
        assert stored[pk][:2] == (code, is_active)
        if not is_active:
            assert stored[pk][2] == f"new{i}"
    new_codes = {c for c, a in rows if a and c not in active}
    touched = {c for c, a in rows if a and c in active}
    assert result.created == len(new_codes) + len(inactive_ids)
    assert result.updated == (len(touched) if on_conflict == "update" else 0)


# -- arrays: what bulk_create stores ----------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([2**15, 2**31, -(2**31) - 1])
    | st.floats(-4, 4, allow_nan=False)
    | st.text(string.digits + "ab{},", max_size=3)
    | st.dates()
    | st.datetimes(timezones=st.just(datetime.UTC))
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.frozensets(st.integers(0, 3), max_size=2)
        | st.dictionaries(st.text("ab", max_size=1), st.integers(0, 2), max_size=2)
    ),
    max_leaves=6,
)
ARRAYS = [
    (Sample, "words"),
    (Sample, "numbers"),
    (Shapes, "flags"),
    (Shapes, "days"),
    (Shapes, "smalls"),
    (Shapes, "grid"),
]


def _same(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_same(v) for v in value]
    return value


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(ARRAYS), value=values)
@example(target=(Sample, "numbers"), value=[[1, 2]])
@example(target=(Sample, "words"), value={"a": 1})
@example(
    target=(Shapes, "days"),
    value=[datetime.datetime(2024, 5, 6, 20, tzinfo=datetime.UTC)],
)
@override_settings(TIME_ZONE="Asia/Kolkata")
def test_arrays_are_stored_as_bulk_create_stores_them(
    target: tuple[type[models.Model], str], value: Any
) -> None:
    """Whatever copy_from stores, bulk_create stores too, and the same value."""
    model, field = target

    def read() -> Any:
        return _same(model.objects.values_list(field, flat=True).get())  # type: ignore[attr-defined]

    ours = outcome(lambda: model.objects.copy_from([{field: value}]), read)  # type: ignore[attr-defined]
    if ours[0] == "stored":
        django = outcome(
            lambda: model.objects.bulk_create([model(**{field: value})]),  # type: ignore[attr-defined]
            read,
        )
        assert django == ours


# -- durations: what PostgreSQL reads ---------------------------------------------------

durations = st.one_of(
    st.from_regex(r"\A-?\d{1,3}(:\d{1,2}){0,2}(\.\d{1,8})?\Z"),
    st.from_regex(r"\A-?\d{1,2} (days? )?[-+]?\d{1,2}:\d{2}(:\d{2}(\.\d{1,8})?)?\Z"),
    st.from_regex(r"\AP(\d{1,2}D)?(T(\d{1,2}H)?(\d{1,2}M)?(\d{1,2}(\.\d{1,8})?S)?)?\Z"),
    st.sampled_from(["10:00", "1 mon", "@ 1 hour", "1,5", "-P1D", "١٢٣", " 1"]),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cell=durations)
def test_a_duration_cell_means_what_postgresql_reads(cell: str) -> None:
    """A CSV interval cell is read by Django's rules; it is refused rather than stored
    when PostgreSQL (and so bulk_create with the text, or psql's COPY) reads it as
    another duration."""
    text = f"span\n{cell}\n"
    assert "\n" not in cell and "," not in cell or cell == "1,5"
    if cell == "1,5":
        text = 'span\n"1,5"\n'

    def read() -> Any:
        return Sample.objects.values_list("span", flat=True).get()

    ours = outcome(lambda: Sample.objects.copy_from(io.StringIO(text)), read)

    def parse() -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::text::interval", [cell])
            row = cursor.fetchone()
            assert row is not None
            return row[0]

    server = outcome(lambda: None, parse)
    if ours[0] == "stored" and server[0] == "stored":
        assert ours[1] == server[1]


# -- text files already read from ------------------------------------------------------

cells = st.lists(
    st.sampled_from(["\r\n", "\r", "\n", '"', ",", "a", "é", " ", "\u2028"]), max_size=6
).map("".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(st.tuples(cells, cells), min_size=1, max_size=4),
    preamble=st.lists(
        cells.map(lambda c: c.replace("\r", "").replace("\n", "")), max_size=3
    ),
    encoding=st.sampled_from(["utf-8", "latin-1"]),
    terminator=st.sampled_from(["\r\n", "\n", "\r"]),
)
def test_a_text_file_read_from_loads_exactly_what_was_written(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[tuple[str, str]],
    preamble: list[str],
    encoding: str,
    terminator: str,
) -> None:
    """Lines skipped with readline(), the rest by copy_from: "\\r\\n" inside a quoted
    cell stays "\\r\\n" (the file is switched to newline="" where it stands). Never
    other data: the one refusal is a file of lone "\\r" line ends, whose decoder holds
    the "\\r" until it sees the next character."""
    if encoding == "latin-1":
        rows = [(a.replace("\u2028", "x"), b.replace("\u2028", "x")) for a, b in rows]
        preamble = [line.replace("\u2028", "x") for line in preamble]
    out = io.StringIO(newline="")
    for line in preamble:
        out.write(line + terminator)
    csv.writer(out, lineterminator=terminator, quoting=csv.QUOTE_ALL).writerows(
        [("text", "short"), *rows]
    )
    path: Path = tmp_path_factory.mktemp("csv") / "f.csv"
    path.write_bytes(out.getvalue().encode(encoding))
    Sample.objects.all().delete()
    with path.open(encoding=encoding) as handle:
        for _ in preamble:
            handle.readline()
        try:
            Sample.objects.copy_from(handle)
        except ValueError as refused:
            assert terminator == "\r" and preamble, refused
            assert 'open(path, newline="")' in str(refused)
            assert Sample.objects.count() == 0
            return
    assert list(Sample.objects.order_by("pk").values_list("text", "short")) == rows


# -- table names ------------------------------------------------------------------------

names = (
    st.lists(
        st.sampled_from([*"ab%s{}()\"'\\;- \n\tÉ\u202e", "%s", "%%", "%(x)s"]),
        min_size=1,
        max_size=8,
    )
    .map("".join)
    .filter(lambda n: not (len(n) > 1 and n.startswith('"') and n.endswith('"')))
)


def test_helper_names_never_collide_with_the_models() -> None:
    @given(
        st.sets(
            st.sampled_from(["dbtuning_row", *[f"dbtuning_row_{i}" for i in range(6)]])
        )
    )
    def check(taken: set[str]) -> None:
        assert helper_name("dbtuning_row", taken) not in taken

    check()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=names)
@example(table='Weird "T"')
@example(table="pct %s %% {} %(x)s")
@example(table="nl\nline")
def test_any_table_name_loads_or_is_refused_before_any_statement(table: str) -> None:
    with isolate_apps("tests.copyapp"):
        meta = type("Meta", (), {"app_label": "copyapp", "db_table": table})
        model: Any = type(
            "Named",
            (models.Model,),
            {
                "__module__": __name__,
                "key": models.CharField(max_length=20, unique=True),
                "objects": CopyManager(),
                "Meta": meta,
            },
        )
        if '"' in table:
            with (
                CaptureQueriesContext(connection) as queries,
                pytest.raises(ValueError) as info,
            ):
                model.objects.copy_from([{"key": "a"}])
            assert shown(table) in str(info.value) and "\n" not in str(info.value)
            assert not queries.captured_queries
            return
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.cursor.execute(
                    sql.SQL(
                        "CREATE TABLE {} (id bigint GENERATED BY DEFAULT AS IDENTITY "
                        "PRIMARY KEY, key varchar(20) NOT NULL UNIQUE)"
                    ).format(sql.Identifier(table))
                )
            model.objects.copy_from([{"id": 7, "key": "a"}, {"key": "b"}])
            result = model.objects.copy_from(
                [{"key": "c"}, {"key": "a"}],
                on_conflict="ignore",
                unique_fields=["key"],
                return_ids=True,
            )
            assert result.ids is not None and result.ids[0] > 7 and result.ids[1] == 7
            with pytest.raises(CopyIntegrityError) as error:
                model.objects.copy_from([{"key": "d"}, {"key": "b"}])
            assert (error.value.row, error.value.column) == (1, "key")
            assert "\n" not in str(error.value)
            transaction.set_rollback(True)


def test_errors_never_hold_a_raw_control_character() -> None:
    """The CopyError family's messages for a data error stay on one line."""
    with pytest.raises(CopyDataError) as info:
        Sample.objects.copy_from([{"number": "x\ny"}])
    assert "\n" not in str(info.value)
    assert isinstance(info.value, CopyError)
