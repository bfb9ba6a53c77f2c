"""How each column's values become what psycopg's dumpers store: Django's semantics, fast.

A *slow* converter is Django's own conversion of one value (``to_python`` /
``get_prep_value``, value-free errors). A *fast* converter, where there is one, lets the
values psycopg already stores exactly as Django would pass untouched and hands anything
else to the slow one; its ``inline`` form is compiled into the row builder
(:mod:`.rowcode`), so the common value costs no call. Fast converters exist only where a
dumper would accept a wrong value silently (any truthy object into ``bool``, a
``datetime`` into ``date``, an int that wraps in ``int4``) or where Django changes the
value (a model instance for a foreign key).
"""

from __future__ import annotations

import datetime
import decimal
import re
import warnings
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.dateparse import standard_duration_re

from django_dbtuning.copy.redact import (
    ValueFreeError,
    ValueFreeTypeError,
    is_not_finite,
)

if TYPE_CHECKING:
    from django_dbtuning.copy.plan import Column

Converter = Callable[[Any], Any]

# Conversion methods a subclass may override; if it does, its values take the generic
# ``get_db_prep_save`` path instead of the fast one.
_CONVERSION_METHODS = (
    "to_python",
    "get_prep_value",
    "get_db_prep_value",
    "get_db_prep_save",
    "pre_save",
    "db_type",
)


def django_base(field: models.Field[Any, Any]) -> type | None:
    """The Django class whose conversion methods ``field`` uses, if it overrides none."""
    for cls in type(field).__mro__:
        module = cls.__module__
        if module.startswith(("django.db.models", "django.contrib.postgres")):
            return cls
        if any(name in vars(cls) for name in _CONVERSION_METHODS):
            return None
    return None  # pragma: no cover - every Field derives from django.db.models


def slow_converter(
    f: models.Field[Any, Any], connection: BaseDatabaseWrapper
) -> Converter:
    """Django's semantics for one value, producing what the dumpers accept."""
    if isinstance(f, models.ForeignKey | models.OneToOneField):
        target = f.target_field
        inner = slow_converter(target, connection)
        attname = target.attname

        def fk(value: Any) -> Any:
            if isinstance(value, models.Model):
                value = getattr(value, attname)
            return inner(value)

        return fk
    if django_base(f) is None:
        return partial(_generic_prep, f, connection)
    internal = f.get_internal_type()
    if internal == "JSONField":
        return partial(_jsonb, _json_dumps(f))
    if internal == "ArrayField":
        base_field = f.base_field  # type: ignore[attr-defined]
        item = slow_converter(base_field, connection)

        def array(value: Any) -> Any:
            if value is None:
                return None
            # Django writes only a list or a tuple as an array (anything else goes
            # to the server, which refuses it); each item goes through the base
            # field, which refuses a list where a number belongs.
            if not isinstance(value, list | tuple):
                raise ValueFreeTypeError(f"expected a list, got {type(value).__name__}")
            return [item(v) for v in value]

        return array
    if internal == "DecimalField":
        return partial(_finite, f.to_python)
    if internal == "DateTimeField":
        return partial(_aware, f)
    if internal == "DurationField":
        return partial(_duration, f.to_python)
    if internal in ("UUIDField", "BooleanField"):
        return partial(_checked, f.to_python)
    if internal == "BinaryField":
        return _identity
    return partial(_checked, f.get_prep_value)


def fast_converter(column: Column, *, binary: bool) -> Converter | None:
    """The column's fast converter (and its ``inline`` form), None to pass values as is."""
    f = column.field
    if not column.known:
        return column.slow
    if isinstance(f, models.ForeignKey | models.OneToOneField):
        return _foreign_key(column, f.target_field.attname)
    internal = f.get_internal_type()
    if binary and column.pg_type in _INT_LIMITS:
        # psycopg's C binary dumpers wrap an out-of-range int into int2/int4 without
        # an error (2**31 is stored as -2**31): check the range here.
        low, high = _INT_LIMITS[column.pg_type]
        slow = column.slow
        name = column.pg_type

        def ranged(value: Any) -> Any:
            if type(value) is not int:
                value = slow(value)
                if value is None:
                    return None
            if low <= value <= high:
                return value
            raise ValueFreeError(f"value out of range for type {name}")

        column.inline = (
            f"({{v}} if type({{v}}) is int and {low} <= {{v}} <= {high} "
            "else {f}({v}))"
        )
        return ranged
    if internal == "BooleanField":
        slow = column.slow

        def boolean(value: Any) -> Any:
            if value is True or value is False or value is None:
                return value
            return slow(value)

        column.inline = (
            "({v} if {v} is True or {v} is False or {v} is None else {f}({v}))"
        )
        return boolean
    if internal == "DecimalField":
        return _finite_decimal(column)
    if internal in _EXACT_TYPES:
        # psycopg's C binary dumpers for date, time and interval read the object
        # as that type without checking it: a str or a datetime given for a
        # TimeField or DurationField is stored as garbage. Only the exact type
        # passes; anything else takes Django's conversion.
        return _exact(column, _EXACT_TYPES[internal])
    if internal == "JSONField":
        dumps = _json_dumps(f)
        if binary and dumps is None:
            return None  # the cursor's jsonb dumper serialises plain values
        return partial(_jsonb, dumps)
    if internal == "ArrayField":
        return _array(column, binary=binary)
    return None


_INT_LIMITS = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}


def _check_ints(value: Any, low: int, high: int, name: str) -> None:
    if isinstance(value, list | tuple):
        for item in value:
            _check_ints(item, low, high, name)
    elif isinstance(value, int) and not low <= value <= high:
        raise ValueFreeError(f"value out of range for type {name}")


def _array(column: Column, *, binary: bool) -> Converter:
    """An array passes as it is only when it is what Django would write; else Django's way.

    psycopg's list dumper writes whatever it gets: a dict as its keys, ``False``, ``0``
    or ``""`` as an empty array, any iterable as its items, a list of lists into a
    one-dimensional field as a 2-D array (PostgreSQL does not check dimensions). Django
    writes only a list or tuple, nested exactly as deep as the field, and converts each
    item with the base field. So a value passes untouched only when it is a list or tuple
    of that depth; anything else takes the slow path, which converts or refuses it.
    """
    f = column.field
    slow = column.slow
    if items_need_django(f):
        # Items psycopg's binary dumpers take unchecked: NaN decimals, a str or a
        # datetime for a time, interval or date, any object for a bool.
        return slow
    depth = _array_shape(f)[0]
    item_type = column.pg_type[:-2] if binary and column.pg_type else ""
    if item_type not in _INT_LIMITS:
        if depth == 1:
            return _flat_array(slow)

        def array(value: Any) -> Any:
            if _shaped(value, depth):
                return value
            return slow(value)

        return array
    # psycopg's int2/int4 dumpers wrap an out-of-range int: only exact ints in range
    # pass; anything else is converted (int() per item, as Django does), then checked.
    low, high = _INT_LIMITS[item_type]

    def ints(value: Any) -> Any:
        if not (_shaped(value, depth) and _ints_within(value, low, high)):
            value = slow(value)
            _check_ints(value, low, high, item_type)
        return value

    return ints


def _flat_array(slow: Converter) -> Converter:
    sequences = (list, tuple)

    def flat(value: Any) -> Any:
        kind = type(value)
        if kind is list or kind is tuple:
            for item in value:
                if isinstance(item, sequences):
                    return slow(value)
            return value
        return slow(value)

    return flat


def _shaped(value: Any, depth: int) -> bool:
    """A list or tuple whose items are lists ``depth - 1`` levels down, then no list."""
    kind = type(value)
    if kind is not list and kind is not tuple:
        return False
    if depth == 1:
        for item in value:  # noqa: SIM110 - a loop: no generator per value
            if isinstance(item, list | tuple):
                return False
        return True
    return all(_shaped(item, depth - 1) for item in value)


def _ints_within(value: Any, low: int, high: int) -> bool:
    for item in value:
        kind = type(item)
        if kind is int:
            if not low <= item <= high:
                return False
        elif kind is list or kind is tuple:
            if not _ints_within(item, low, high):
                return False
        elif item is not None:
            return False
    return True


_EXACT_TYPES: dict[str, type] = {
    "DateField": datetime.date,
    "TimeField": datetime.time,
    "DurationField": datetime.timedelta,
}


def _exact(column: Column, exact: type) -> Converter:
    slow = column.slow

    def typed(value: Any) -> Any:
        if type(value) is exact or value is None:
            return value
        return slow(value)

    return typed


def _foreign_key(column: Column, attname: str) -> Converter:
    model_cls = models.Model

    def fk(value: Any) -> Any:
        if isinstance(value, model_cls):
            return getattr(value, attname)
        return value

    column.inline = "({v} if type({v}) is int or {v} is None else {f}({v}))"
    return fk


def _finite_decimal(column: Column) -> Converter:
    """Decimal('NaN') and infinities pass psycopg's numeric dumper; Django's to_python
    refuses them (so save() and bulk_create do): only finite Decimals skip it."""
    slow = column.slow
    decimal_type = decimal.Decimal

    def finite(value: Any) -> Any:
        if type(value) is decimal_type and value.is_finite():
            return value
        return slow(value)

    column.inline = "({v} if type({v}) is Decimal and {v}.is_finite() else {f}({v}))"
    return finite


def _array_shape(f: Any) -> tuple[int, str]:
    """How deep an ArrayField (of arrays) nests, and the internal type of its items."""
    depth = 0
    while f.get_internal_type() == "ArrayField":
        f = f.base_field
        depth += 1
    return depth, str(f.get_internal_type())


def items_need_django(f: Any) -> bool:
    """Items the binary dumpers would take unchecked or read their own way.

    Decimals (NaN), times and intervals (any object read as one), dates (a datetime
    cut to its date in UTC instead of the current time zone), booleans (any object by
    its truth).
    """
    return _array_shape(f)[1] in (
        "DecimalField",
        "TimeField",
        "DurationField",
        "DateField",
        "BooleanField",
    )


def _identity(value: Any) -> Any:
    return value


_EXPRESSION = "expressions cannot be loaded with COPY; pass plain values"


def _checked(convert: Converter, value: Any) -> Any:
    if hasattr(value, "resolve_expression"):
        raise ValueFreeTypeError(_EXPRESSION)
    return convert(value)


# Text that Django and PostgreSQL both read as a duration, differently: two parts of a
# clock are minutes:seconds to Django's parse_duration ("10:00" is ten minutes) and
# hours:minutes to PostgreSQL (ten hours, as bulk_create stores the str); a seventh
# fractional digit is cut by Django and rounded by PostgreSQL.
_LONG_FRACTION = re.compile(r"[.,]\d{7}")


def _duration(to_python: Converter, value: Any) -> Any:
    """``DurationField.to_python``, refusing text whose meaning depends on the reader."""
    if hasattr(value, "resolve_expression"):
        raise ValueFreeTypeError(_EXPRESSION)
    if isinstance(value, str):
        clock = standard_duration_re.match(value)
        if (
            clock is not None
            and clock["minutes"] is not None
            and clock["hours"] is None
            and clock["microseconds"] is None
        ):
            raise ValueFreeError(
                "ambiguous duration: a clock of two parts is minutes:seconds to Django "
                "and hours:minutes to PostgreSQL; write HH:MM:SS"
            )
        if _LONG_FRACTION.search(value):
            raise ValueFreeError(
                "duration with more than six fractional digits (Django cuts them, "
                "PostgreSQL rounds); round it to microseconds"
            )
    return to_python(value)


def _finite(to_python: Converter, value: Any) -> Any:
    """``DecimalField.to_python``, saying "NaN" without repeating the value."""
    if hasattr(value, "resolve_expression"):
        raise ValueFreeTypeError(_EXPRESSION)
    try:
        return to_python(value)
    except Exception:
        if is_not_finite(value):
            raise ValueFreeError(
                "Decimal NaN and infinities are not allowed (DecimalField refuses "
                "them, as save() does)"
            ) from None
        raise


def _aware(f: models.Field[Any, Any], value: Any) -> Any:
    """``DateTimeField.get_prep_value`` whose naive-datetime warning quotes no value."""
    if hasattr(value, "resolve_expression"):
        raise ValueFreeTypeError(_EXPRESSION)
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day)
    value = f.to_python(value)
    if value is not None and settings.USE_TZ and timezone.is_naive(value):
        # Django's own warning prints the datetime: a value of the row.
        model = getattr(f, "model", None)
        name = f"{model.__name__}.{f.name}" if model is not None else f.name
        warnings.warn(
            f"DateTimeField {name} received a naive datetime while time zone support "
            "is active; it is read in the default time zone",
            RuntimeWarning,
            stacklevel=2,
        )
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value


def _generic_prep(
    f: models.Field[Any, Any], connection: BaseDatabaseWrapper, value: Any
) -> Any:
    if hasattr(value, "resolve_expression"):
        raise ValueFreeTypeError(_EXPRESSION)
    return f.get_db_prep_save(value, connection)


def _json_dumps(f: models.Field[Any, Any]) -> Callable[[Any], str] | None:
    encoder = getattr(f, "encoder", None)
    if encoder is None:
        return None
    import json

    return partial(json.dumps, cls=encoder)


def _jsonb(dumps: Callable[[Any], str] | None, value: Any) -> Any:
    if value is None:
        return None
    from psycopg.types.json import Jsonb

    if isinstance(value, Jsonb):
        return value
    return Jsonb(value, dumps=dumps)
