"""Decorated generator and async generator functions (each step in the decorator's unit,
judged when the generator ends), and ``with`` blocks left open across a ``yield``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning import (
    NPlusOneError,
    QueryBudgetExceeded,
    allow_n_plus_one,
    query_budget,
    track_queries,
)
from django_dbtuning.queries import QueryReport
from tests.queries.helpers import (
    YIELD_WARNING,
    nothing_current,
    queries,
    raw_n_plus_one,
)
from tests.testapp.models import Author

pytestmark = pytest.mark.django_db


def budget_count(run: Callable[[], object]) -> int:
    """The count a ``max_queries=0`` budget reports (0 when it does not raise)."""
    try:
        run()
    except QueryBudgetExceeded as exc:
        return exc.count
    return 0


# --- finding 10: the decorator covers the generator's own execution ----------------------------


def test_budget_raises_for_a_decorated_generator():
    @query_budget(max_queries=1, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        queries(5)
        yield 1

    with pytest.raises(QueryBudgetExceeded, match=r"5 queries in .*rows") as info:
        list(rows())
    assert (info.value.count, info.value.budget) == (5, 1)
    assert nothing_current()


def test_budget_raises_for_a_decorated_async_generator():
    @query_budget(max_queries=1, n_plus_one="ignore")
    async def rows() -> AsyncIterator[int]:
        await Author.objects.acount()
        await sync_to_async(queries)(4)
        yield 1

    async def run() -> list[int]:
        return [row async for row in rows()]

    with pytest.raises(QueryBudgetExceeded) as info:
        async_to_sync(run)()
    assert info.value.count == 5


def test_n_plus_one_in_a_decorated_generator_raises():
    @query_budget()
    def rows() -> Iterator[int]:
        yield 1
        raw_n_plus_one()
        yield 2

    with pytest.raises(NPlusOneError, match=r"in .*rows"):
        list(rows())


def test_decorated_functions_stay_generator_functions():
    @query_budget(max_queries=3)
    def rows() -> Iterator[int]:
        yield 1

    @allow_n_plus_one()
    async def arows() -> AsyncIterator[int]:
        yield 1

    assert inspect.isgeneratorfunction(rows)
    assert inspect.isasyncgenfunction(arows)
    assert (rows.__name__, arows.__name__) == ("rows", "arows")
    assert inspect.isgenerator(rows())
    assert inspect.isasyncgen(arows())


def test_the_consumers_queries_between_steps_are_not_counted():
    @query_budget(max_queries=2)
    def rows() -> Iterator[int]:
        queries(1)
        yield 1
        queries(1)
        yield 2

    for _ in rows():
        queries(10)  # the consumer's own: not the generator's
        raw_n_plus_one()  # nor its N+1
    assert nothing_current()

    @query_budget(max_queries=0, n_plus_one="ignore")
    def three() -> Iterator[int]:
        for i in range(3):
            queries(1)
            yield i

    def consume() -> None:
        for _ in three():
            queries(5)

    assert budget_count(consume) == 3


def test_the_consumers_enclosing_blocks_count_the_steps_they_enclose():
    @query_budget(n_plus_one="ignore")
    def rows() -> Iterator[int]:
        for i in range(3):
            queries(2)
            yield i

    gen = rows()
    next(gen)  # 2 queries outside any consumer block
    with track_queries() as first:
        next(gen)  # 2 queries of the generator, during this next()
        queries(1)
    with track_queries() as between:
        queries(1)  # no step taken here: none of the generator's queries
    with track_queries() as last, pytest.raises(StopIteration):
        next(gen)
        next(gen)
    assert (first.count, between.count, last.count) == (3, 1, 2)
    assert nothing_current()


def test_the_generators_queries_do_not_leak_into_the_consumers_units():
    @query_budget(n_plus_one="ignore")
    def rows() -> Iterator[QueryReport]:
        with track_queries() as inner:  # carried between steps by the decorator
            yield inner
            queries(2)
            yield inner

    gen = rows()
    inner = next(gen)
    with track_queries() as consumer:
        queries(3)
    next(gen)
    assert (inner.count, consumer.count) == (2, 3)
    gen.close()
    assert nothing_current()


def test_a_generator_closed_early_is_judged_on_what_ran():
    @query_budget(max_queries=1, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        for i in range(10):
            queries(1)
            yield i

    gen = rows()
    assert [next(gen), next(gen)] == [0, 1]
    with pytest.raises(QueryBudgetExceeded) as info:
        gen.close()
    assert info.value.count == 2
    assert info.value.__context__ is None  # not "during handling of GeneratorExit"

    under = rows()
    next(under)
    under.close()  # 1 query: within the budget

    with pytest.raises(QueryBudgetExceeded), contextlib.closing(rows()) as gen:
        for i in gen:
            if i == 3:
                break

    never_started = rows()
    never_started.close()  # nothing ran: nothing to judge
    assert nothing_current()


def test_a_generator_collected_unfinished_is_judged_then(monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr(
        sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_value)
    )

    @query_budget(max_queries=1, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        for i in range(10):
            queries(1)
            yield i

    for i in rows():
        if i == 2:
            break  # the generator is closed when it is collected, here
    gc.collect()
    assert [type(exc) for exc in reported] == [QueryBudgetExceeded]
    assert reported[0].count == 3  # type: ignore[attr-defined]


def test_values_sent_thrown_and_returned_reach_the_generator():
    @query_budget(max_queries=10)
    def echo() -> Generator[str, str, str]:
        received = []
        try:
            while True:
                try:
                    received.append((yield f"ready {len(received)}"))
                except KeyError as exc:
                    received.append(f"caught {exc.args[0]}")
        finally:
            queries(1)  # runs under the unit when closed

    @query_budget(max_queries=10)
    def counted(n: int) -> Generator[int, None, str]:
        for i in range(n):
            queries(1)
            yield i
        return f"done {n}"

    gen = echo()
    assert next(gen) == "ready 0"
    assert gen.send("a") == "ready 1"
    assert gen.throw(KeyError("k")) == "ready 2"
    gen.close()

    def outer() -> Generator[int, None, str]:
        result = yield from counted(2)
        return result + "!"

    driven = outer()
    assert [next(driven), next(driven)] == [0, 1]
    with pytest.raises(StopIteration) as stop:
        next(driven)
    assert stop.value.value == "done 2!"


def test_an_exception_out_of_the_generator_wins_over_its_budget():
    @query_budget(max_queries=0, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        queries(3)
        yield 1
        raise LookupError("the generator's own error")

    gen = rows()
    next(gen)
    with pytest.raises(LookupError, match="own error"):
        next(gen)

    gen = rows()
    next(gen)
    with pytest.raises(ValueError, match="thrown in"):
        gen.throw(ValueError("thrown in"))  # not handled: propagates, budget not judged
    assert nothing_current()


def test_recursive_decorated_generators_each_have_their_own_unit():
    budget = query_budget(max_queries=3, n_plus_one="ignore")

    @budget
    def walk(depth: int) -> Iterator[int]:
        queries(1)
        if depth:
            yield from walk(depth - 1)  # the child's steps run inside this one's
        yield depth

    assert list(walk(2)) == [0, 1, 2]  # walk(2) counts 3: its own and its children's
    with pytest.raises(QueryBudgetExceeded) as info:
        list(walk(5))
    assert info.value.count == 4  # walk(3) fails first; the others unwind unjudged
    assert nothing_current()


def test_one_decorator_shared_by_threads_each_iterating_its_own_generator():
    budget = query_budget(max_queries=2, n_plus_one="ignore")

    @budget
    def rows(n: int) -> Iterator[int]:
        for i in range(n):
            queries(1)
            yield i

    raised: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(12)

    def work(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(10):
                try:
                    for _ in rows(1 + i % 3):  # 1, 2 or 3 queries
                        queries(2)  # the thread's own, between steps
                except QueryBudgetExceeded as exc:
                    raised.append(exc.count)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert raised == [3] * 40  # 4 threads of 12 run 3 queries, 10 times each


def test_one_decorator_shared_by_asyncio_tasks_each_iterating_its_own_generator():
    budget = query_budget(max_queries=1, n_plus_one="ignore")

    @budget
    async def rows(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await sync_to_async(queries)(1)
            await asyncio.sleep(0)  # let the other tasks step their own generators
            yield i

    async def consume(n: int) -> int:
        try:
            async for _ in rows(n):
                await sync_to_async(queries)(3)
        except QueryBudgetExceeded as exc:
            return exc.count
        return 0

    async def run() -> list[int]:
        return await asyncio.gather(*(consume(1 + i % 2) for i in range(20)))

    assert async_to_sync(run)() == [0, 2] * 10


def test_async_generator_protocol_through_the_decorator():
    @query_budget(max_queries=1, n_plus_one="ignore")
    async def echo() -> AsyncIterator[str]:
        received: list[Any] = []
        while True:
            try:
                received.append((yield f"ready {len(received)}"))
            except KeyError:
                received.append("caught")
                await sync_to_async(queries)(1)

    async def run() -> tuple[list[str], int]:
        gen = echo()
        seen = [await anext(gen), await gen.asend("a"), await gen.athrow(KeyError())]
        await sync_to_async(queries)(5)  # the consumer's: not counted
        seen.append(await gen.asend("b"))
        await gen.athrow(KeyError())
        try:
            await gen.aclose()
        except QueryBudgetExceeded as exc:
            return seen, exc.count
        return seen, 0  # pragma: no cover

    seen, count = async_to_sync(run)()
    assert seen == ["ready 0", "ready 1", "ready 2", "ready 3"]
    assert count == 2


def test_async_consumers_enclosing_block_counts_the_steps_it_awaits():
    @query_budget(n_plus_one="ignore")
    async def rows() -> AsyncIterator[int]:
        for i in range(2):
            await sync_to_async(queries)(2)
            yield i

    async def run() -> tuple[int, int]:
        gen = rows()
        await anext(gen)
        async with track_queries() as during:
            await anext(gen)
        async with track_queries() as between:
            await sync_to_async(queries)(1)
        await gen.aclose()
        return during.count, between.count

    assert async_to_sync(run)() == (2, 1)


def test_allow_n_plus_one_decorator_on_generators_covers_their_steps_only():
    @allow_n_plus_one()
    def polling() -> Iterator[int]:
        for i in range(3):
            raw_n_plus_one()  # intended
            yield i

    with query_budget(n_plus_one="raise") as report:
        assert list(polling()) == [0, 1, 2]
    assert report.count == 12  # allowed queries still count

    with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
        for _ in polling():
            pass
        raw_n_plus_one()  # the consumer's own loop is not allowed

    with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
        gen = polling()
        next(gen)
        raw_n_plus_one()  # between steps: not allowed either
        gen.close()

    @allow_n_plus_one()
    async def apolling() -> AsyncIterator[int]:
        await sync_to_async(raw_n_plus_one)()
        yield 1

    async def run() -> None:
        async with query_budget(n_plus_one="raise"):
            async for _ in apolling():
                pass
        async with query_budget(n_plus_one="raise"):
            gen = apolling()
            await anext(gen)
            await sync_to_async(raw_n_plus_one)()
            await gen.aclose()

    with pytest.raises(NPlusOneError):
        async_to_sync(run)()
    assert nothing_current()


# Each operation of a schedule: the consumer runs queries, takes a step of the decorated
# generator (which runs queries), or does either inside a track_queries() block.
operations = st.lists(
    st.tuples(st.sampled_from(["own", "step"]), st.integers(0, 3), st.booleans()),
    max_size=12,
)


@given(schedule=operations)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_property_the_decorator_counts_exactly_the_generators_steps(schedule):
    plan = [n for kind, n, _ in schedule if kind == "step"]

    @query_budget(max_queries=0, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        for n in plan:
            queries(n)
            yield n

    expected_blocks: list[int] = []
    seen_blocks: list[int] = []

    def consume() -> None:
        gen = rows()
        for kind, n, in_block in schedule:
            with contextlib.ExitStack() as stack:
                report = stack.enter_context(track_queries()) if in_block else None
                if kind == "step":
                    next(gen)
                else:
                    queries(n)
            if report is not None:
                seen_blocks.append(report.count)
                expected_blocks.append(n)
        for _ in gen:  # exhaust: the budget is judged
            pass  # pragma: no cover - every planned step was taken above

    assert budget_count(consume) == sum(plan)
    assert seen_blocks == expected_blocks
    assert nothing_current()


# --- finding 11: with blocks open across a yield ------------------------------------------------


def test_allow_n_plus_one_open_across_a_yield_warns_and_names_the_line():
    allow = allow_n_plus_one()

    def rows() -> Iterator[int]:
        with allow:  # the warning names this line
            yield 1

    line = inspect.getsourcelines(rows)[1] + 1
    with pytest.warns(RuntimeWarning, match=YIELD_WARNING) as caught:
        gen = rows()
        next(gen)
    message = str(caught[0].message)
    assert f"test_generators.py:{line}" in message
    assert "@allow_n_plus_one()" in message
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
    # What the warning is about: until the generator resumes, the caller's N+1 is allowed.
    with query_budget(n_plus_one="raise"):
        raw_n_plus_one()
    gen.close()
    with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
        raw_n_plus_one()


@pytest.mark.parametrize("manager", [track_queries, query_budget])
def test_track_queries_and_query_budget_open_across_a_yield_warn(manager):
    def rows() -> Iterator[int]:
        with manager():
            yield 1

    with pytest.warns(RuntimeWarning, match=YIELD_WARNING) as caught:
        list(rows())
    assert "@query_budget(...)" in str(caught[0].message)


def test_async_with_open_across_a_yield_warns():
    async def rows() -> AsyncIterator[int]:
        async with allow_n_plus_one():
            await sync_to_async(queries)(1)  # an await is not a yield: no suspension
            yield 1

    async def run() -> list[int]:
        return [row async for row in rows()]

    with pytest.warns(RuntimeWarning, match=YIELD_WARNING):
        async_to_sync(run)()


def test_blocks_in_generators_that_do_not_yield_inside_them_do_not_warn():
    def rows() -> Iterator[int]:
        for i in range(3):
            with allow_n_plus_one(), track_queries():
                raw_n_plus_one()
            yield i

    async def arows() -> AsyncIterator[int]:
        async with query_budget(n_plus_one="raise"):
            await sync_to_async(queries)(1)
        yield 1

        def nested() -> Iterator[
            int
        ]:  # a yield in a nested function is not this block's
            yield 2

        with track_queries():
            list(nested())

    async def run() -> list[int]:
        return [row async for row in arows()]

    assert list(rows()) == [0, 1, 2]
    assert async_to_sync(run)() == [1]


def test_the_warning_is_shown_once_per_line():
    def rows() -> Iterator[int]:
        with track_queries():
            yield 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            list(rows())
    assert [w.category for w in caught] == [RuntimeWarning]


def test_generators_used_as_context_managers_do_not_warn():
    @contextlib.contextmanager
    def at_most(n: int) -> Iterator[Any]:
        with query_budget(max_queries=n, n_plus_one="ignore") as report:
            yield report

    @contextlib.asynccontextmanager
    async def quietly() -> AsyncIterator[None]:
        async with allow_n_plus_one():
            yield

    with at_most(2) as report:  # the block covers the managed code: intended here
        queries(2)
    assert report.count == 2
    with pytest.raises(QueryBudgetExceeded), at_most(1):
        queries(2)

    async def run() -> None:
        async with query_budget(n_plus_one="raise"), quietly():
            await sync_to_async(raw_n_plus_one)()

    async_to_sync(run)()


@pytest.fixture
def budget_of_two() -> Iterator[Any]:
    with query_budget(max_queries=2, n_plus_one="ignore") as report:
        yield report


def test_pytest_yield_fixtures_do_not_warn(budget_of_two):
    queries(2)
    assert budget_of_two.count == 2


def test_blocks_inside_a_decorated_generator_do_not_warn_and_stay_inside():
    @query_budget(n_plus_one="raise")
    def rows() -> Iterator[int]:
        with allow_n_plus_one():  # carried between steps by the decorator
            for i in range(2):
                raw_n_plus_one()
                yield i

    with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
        for _ in rows():
            raw_n_plus_one()  # the consumer's N+1, between the steps: not allowed
    assert nothing_current()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_streamed_body_with_a_block_across_chunks_does_not_warn(asynchronous):
    """The middleware carries a streamed body's blocks between chunks: nothing leaks."""
    from django.http import HttpRequest, StreamingHttpResponse
    from django.test import RequestFactory

    from django_dbtuning.middleware import QueryCountMiddleware

    def events() -> Iterator[str]:
        with allow_n_plus_one():  # a polling body, as the README suggests
            for i in range(2):
                raw_n_plus_one()
                yield str(i)

    async def aevents() -> AsyncIterator[str]:
        async with allow_n_plus_one():
            for i in range(2):
                await sync_to_async(raw_n_plus_one)()
                yield str(i)

    def view(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(events())

    async def aview(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(aevents())

    def between() -> None:
        with pytest.raises(NPlusOneError), query_budget(n_plus_one="raise"):
            raw_n_plus_one()  # between two chunks: the body's allowance is not here

    if not asynchronous:
        response = QueryCountMiddleware(view)(RequestFactory().get("/"))
        chunks = iter(response)
        first = next(chunks)
        between()
        assert first + b"".join(chunks) == b"01"
        response.close()
        return

    async def run() -> bytes:
        response = await QueryCountMiddleware(aview)(RequestFactory().get("/"))
        chunks = aiter(response)
        first = await anext(chunks)
        await sync_to_async(between)()
        body = first + b"".join([chunk async for chunk in chunks])
        await sync_to_async(response.close)()
        return body

    assert async_to_sync(run)() == b"01"


def test_a_decorated_generator_advanced_by_two_threads_in_turn():
    inner: list[QueryReport] = []

    @query_budget(max_queries=4, n_plus_one="ignore")
    def rows() -> Iterator[int]:
        with track_queries() as report:  # open across steps taken in both threads
            inner.append(report)
            for i in range(4):
                queries(1)
                yield i

    gen = rows()
    outcome: list[object] = []

    def step(in_block: bool) -> None:
        try:
            if in_block:
                with track_queries() as around:
                    next(gen)
                outcome.append(around.count)
            else:
                next(gen)
                queries(2)  # this thread's own: neither the generator's nor its block's
        finally:
            connection.close()

    for in_block in (False, True, False, True):
        thread = threading.Thread(target=step, args=(in_block,))
        thread.start()
        thread.join()
    with pytest.raises(StopIteration):
        next(gen)
    assert outcome == [1, 1]
    assert inner[0].count == 4
    assert nothing_current()


def test_a_decorated_async_generator_advanced_by_several_tasks():
    inner: list[QueryReport] = []

    @query_budget(max_queries=0, n_plus_one="ignore")
    async def rows() -> AsyncIterator[int]:
        async with track_queries() as report:
            inner.append(report)
            for i in range(3):
                await sync_to_async(queries)(1)
                yield i

    async def run() -> tuple[list[int], int]:
        gen = rows()
        seen = [await asyncio.create_task(anext(gen)) for _ in range(3)]
        await sync_to_async(queries)(5)
        try:
            await asyncio.create_task(anext(gen))
        except QueryBudgetExceeded as exc:
            return seen, exc.count
        return seen, -1  # pragma: no cover

    assert async_to_sync(run)() == ([0, 1, 2], 3)
    assert inner[0].count == 3
