"""Decorators above ``@contextmanager`` (refused), and the open-across-a-``yield`` warning
for generators reached through ``yield from`` and for streamed bodies."""

from __future__ import annotations

import contextlib
import functools
import gzip
import inspect
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, StreamingHttpResponse
from django.middleware.gzip import GZipMiddleware
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning import (
    NPlusOneError,
    QueryBudgetExceeded,
    allow_n_plus_one,
    query_budget,
    track_queries,
)
from django_dbtuning.middleware import QueryCountMiddleware
from django_dbtuning.queries import QueryReport
from tests.queries.helpers import (
    YIELD_WARNING,
    nothing_current,
    queries,
    raw_n_plus_one,
)

pytestmark = pytest.mark.django_db


# --- a decorator above @contextmanager would check nothing: refused at decoration ----------

DECORATORS: list[tuple[str, Callable[[], Any]]] = [
    ("query_budget(...)", lambda: query_budget(max_queries=1, n_plus_one="ignore")),
    ("allow_n_plus_one()", allow_n_plus_one),
]


@pytest.mark.parametrize(("name", "decorator"), DECORATORS)
def test_a_decorator_above_contextmanager_is_refused_at_decoration(name, decorator):
    def managed() -> Iterator[None]:
        queries(5)
        yield

    async def amanaged() -> AsyncIterator[None]:
        yield

    for wrapped in (
        contextlib.contextmanager(managed),
        contextlib.asynccontextmanager(amanaged),
    ):
        with pytest.raises(TypeError) as info:
            decorator()(wrapped)
        message = str(info.value)
        assert f"@{name} cannot check" in message
        assert wrapped.__qualname__ in message
        assert "below @contextmanager" in message
    assert nothing_current()


def test_below_contextmanager_the_budget_covers_the_generators_own_code():
    @contextlib.contextmanager
    @query_budget(max_queries=1, n_plus_one="ignore")
    def export() -> Iterator[None]:
        queries(3)
        yield
        queries(2)

    with pytest.raises(QueryBudgetExceeded) as info, export():
        queries(7)  # the managed block is not the generator's code
    assert (info.value.count, info.value.budget) == (5, 1)
    assert nothing_current()


def test_below_asynccontextmanager_the_budget_covers_the_generators_own_code():
    @contextlib.asynccontextmanager
    @query_budget(max_queries=1, n_plus_one="ignore")
    async def export() -> AsyncIterator[None]:
        await sync_to_async(queries)(3)
        yield

    async def run() -> None:
        async with export():
            pass

    with pytest.raises(QueryBudgetExceeded) as info:
        async_to_sync(run)()
    assert info.value.count == 3


def test_functions_that_wrap_no_generator_are_decorated_as_before():
    def plain(n: int) -> int:
        queries(n)
        return n

    @functools.wraps(plain)
    def passthrough(n: int) -> int:
        return plain(n)

    async def coroutine() -> None:
        await sync_to_async(queries)(2)

    assert query_budget(max_queries=3)(passthrough)(3) == 3
    with pytest.raises(QueryBudgetExceeded):
        query_budget(max_queries=1)(passthrough)(2)
    with pytest.raises(QueryBudgetExceeded):
        async_to_sync(query_budget(max_queries=1)(coroutine))()
    assert allow_n_plus_one()(passthrough)(1) == 1


def _contextmanager(func: Callable[..., Any]) -> Callable[..., Any]:
    return contextlib.contextmanager(func)


def _passthrough(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _inner_budget(func: Callable[..., Any]) -> Callable[..., Any]:
    # No limit: keeps the function's kind and raises nothing of its own.
    return query_budget(n_plus_one="ignore")(func)


STACKS = [_contextmanager, _passthrough, _inner_budget]


def _use(made: Any) -> None:
    if hasattr(made, "__enter__"):
        with made:
            pass
    else:
        for _ in made:
            pass


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stack=st.lists(st.sampled_from(STACKS), max_size=3), extra=st.integers(1, 3))
def test_property_an_over_budget_generator_never_passes_silently(stack, extra):
    """Any stack of decorators over a generator function, with a budget on top: either
    the decoration is refused, or running it raises. Never a silent pass."""

    def rows() -> Iterator[int]:
        queries(1 + extra)
        yield 1

    func: Callable[..., Any] = rows
    try:
        for wrap in stack:
            func = wrap(func)
        checked = query_budget(max_queries=1, n_plus_one="ignore")(func)
    except TypeError as exc:
        assert "below @contextmanager" in str(exc)
        return
    finally:
        assert nothing_current()
    with pytest.raises(QueryBudgetExceeded) as info:
        _use(checked())
    assert info.value.count == 1 + extra
    assert nothing_current()


# --- yield from: the driver is what iterates the outermost generator ---------------------


def helper() -> Iterator[QueryReport]:
    with track_queries() as report:  # open across the yield
        yield report


def test_contextmanager_delegating_to_a_helper_does_not_warn():
    @contextlib.contextmanager
    def tracked() -> Iterator[QueryReport]:
        yield from helper()

    @contextlib.contextmanager
    def twice_removed() -> Iterator[QueryReport]:
        yield from middle()

    def middle() -> Iterator[QueryReport]:
        return (yield from helper())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked() as report:
            queries(2)  # intended: the helper's block covers the managed code
        with twice_removed() as again:
            queries(3)
    assert caught == []
    assert (report.count, again.count) == (2, 3)
    assert nothing_current()


def test_a_plain_loop_over_the_same_helper_warns():
    reports = []
    with pytest.warns(RuntimeWarning, match=YIELD_WARNING) as caught:
        for report in helper():
            queries(2)  # what the warning is about: the loop's queries count there
            reports.append(report)
    assert [r.count for r in reports] == [2]
    line = inspect.getsourcelines(helper)[1] + 1
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_a_generator_looping_over_the_helper_is_its_consumer_and_warns():
    def rows() -> Iterator[int]:
        for _ in helper():  # a for loop, not a delegation
            queries(1)
            yield 1

    @contextlib.contextmanager
    def managed() -> Iterator[None]:
        for _ in helper():
            yield

    with pytest.warns(RuntimeWarning, match=YIELD_WARNING):
        assert list(rows()) == [1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with managed():
            pass
    assert [w.category for w in caught] == [RuntimeWarning]


def test_a_delegated_throw_reaches_the_helper_without_its_delegating_frame_as_driver():
    def recovering() -> Iterator[int]:
        try:
            yield 1
        except KeyError:
            with track_queries():
                yield 2

    def delegating() -> Iterator[int]:
        yield from recovering()

    # A driver living in contextlib, as ExitStack/@contextmanager code would be: a throw()
    # goes straight to the delegate, its delegating frame stays suspended in the chain.
    namespace: dict[str, Any] = {"__name__": "contextlib"}
    exec("def drive(gen):\n    next(gen)\n    return gen.throw(KeyError)\n", namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gen = delegating()
        assert namespace["drive"](gen) == 2
        gen.close()
    assert caught == []
    with pytest.warns(
        RuntimeWarning, match=YIELD_WARNING
    ):  # driven by this test: warns
        gen = delegating()
        next(gen)
        gen.throw(KeyError)
        gen.close()
    assert nothing_current()


@pytest.fixture
def delegating_fixture() -> Iterator[QueryReport]:
    yield from helper()


def test_pytest_yield_fixture_delegating_to_a_helper_does_not_warn(delegating_fixture):
    queries(2)  # the suite runs with warnings as errors: a warning fails the setup
    assert delegating_fixture.count == 2


# --- streamed bodies --------------------------------------------------------------------


def _body() -> Iterator[bytes]:
    with allow_n_plus_one():  # a polling body, as the README suggests
        for i in range(2):
            raw_n_plus_one()
            yield str(i).encode()


async def _abody() -> AsyncIterator[bytes]:
    async with allow_n_plus_one():
        for i in range(2):
            await sync_to_async(raw_n_plus_one)()
            yield str(i).encode()


def _between() -> None:
    with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
        raw_n_plus_one()  # between two chunks: the body's allowance is not here


def test_a_streamed_body_without_the_middleware_warns_and_the_block_leaks():
    response = StreamingHttpResponse(_body())
    chunks = iter(response)
    with pytest.warns(RuntimeWarning, match=YIELD_WARNING):
        first = next(chunks)
    # Nothing carries the body's block: the code reading the body is inside it.
    with query_budget(n_plus_one="raise"):
        raw_n_plus_one()
    assert first + b"".join(chunks) == b"01"
    response.close()
    assert nothing_current()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_gzipped_streamed_body_under_the_middleware_does_not_warn(asynchronous):
    """GZipMiddleware below QueryCountMiddleware iterates the body in Django's code: the
    middleware still carries the body's blocks between chunks, and nothing warns."""

    def view(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(_body())

    async def aview(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(_abody())

    request = RequestFactory().get("/", HTTP_ACCEPT_ENCODING="gzip")
    if not asynchronous:
        response = QueryCountMiddleware(GZipMiddleware(view))(request)
        assert response["Content-Encoding"] == "gzip"
        chunks = iter(response)
        first = next(chunks)
        _between()
        body = first + b"".join(chunks)
        response.close()
    else:

        async def run() -> bytes:
            response = await QueryCountMiddleware(GZipMiddleware(aview))(request)
            chunks = aiter(response)
            first = await anext(chunks)
            await sync_to_async(_between)()
            body = first + b"".join([chunk async for chunk in chunks])
            await sync_to_async(response.close)()
            return body

        body = async_to_sync(run)()
    assert gzip.decompress(body) == b"01"
    assert nothing_current()
