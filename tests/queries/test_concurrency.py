"""One query_budget / track_queries / allow_n_plus_one instance shared by threads, asyncio
tasks and recursive calls; blocks left out of order, by generators and by exceptions."""

# ruff: noqa: B018, SIM117  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning import (
    QueryBudgetExceeded,
    allow_n_plus_one,
    query_budget,
    track_queries,
)
from django_dbtuning.queries import QueryReport
from django_dbtuning.queries.units import Unit
from tests.queries.helpers import raw_n_plus_one
from tests.testapp.models import Author

pytestmark = pytest.mark.django_db

THREADS = 12
BLOCKS = 20


def one_query() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def in_threads(work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in 12 threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def live_units() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Unit)


def active_unit() -> Unit | None:
    from django_dbtuning.queries.recorder import current_unit

    return current_unit.get()


# --- one instance, many threads ----------------------------------------------------------------


def test_one_query_budget_shared_by_12_threads_raises_in_all_240_blocks():
    budget = query_budget(max_queries=1, n_plus_one="ignore")
    raised: list[tuple[int, int]] = []

    def work(i: int) -> None:
        for _ in range(BLOCKS):
            try:
                with budget as report:
                    one_query()
                    one_query()
            except QueryBudgetExceeded as exc:
                raised.append((exc.count, report.count))

    in_threads(work)
    assert len(raised) == THREADS * BLOCKS
    assert set(raised) == {(2, 2)}


def test_one_query_budget_shared_by_12_threads_logs_every_n_plus_one(caplog):
    budget = query_budget(n_plus_one="log")

    def work(i: int) -> None:
        for _ in range(BLOCKS):
            with budget as report:
                raw_n_plus_one()
            assert report.count == 4

    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        in_threads(work)
    findings = [r.finding for r in caplog.records if hasattr(r, "finding")]
    assert len(findings) == THREADS * BLOCKS
    assert {f.count for f in findings} == {4}


def test_one_query_budget_decorator_shared_by_12_threads():
    @query_budget(max_queries=2)
    def run(n: int) -> None:
        for _ in range(n):
            one_query()

    outcomes: list[str] = []

    def work(i: int) -> None:
        for block in range(BLOCKS):
            try:
                run(3 if (i + block) % 2 else 2)
            except QueryBudgetExceeded as exc:
                outcomes.append(f"raised {exc.count}")
            else:
                outcomes.append("ok")

    in_threads(work)
    assert sorted(set(outcomes)) == ["ok", "raised 3"]
    assert outcomes.count("raised 3") == THREADS * BLOCKS // 2


def test_one_track_queries_shared_by_12_threads_counts_each_block():
    tracker = track_queries()
    counts: list[tuple[int, int]] = []

    def work(i: int) -> None:
        for _ in range(BLOCKS):
            with tracker as report:
                for _ in range(i % 4 + 1):
                    one_query()
            counts.append((i % 4 + 1, report.count))

    in_threads(work)
    assert len(counts) == THREADS * BLOCKS
    assert all(expected == seen for expected, seen in counts)


def test_one_allow_n_plus_one_shared_by_12_threads():
    allow = allow_n_plus_one()
    seen: list[tuple[int, int]] = []

    def work(i: int) -> None:
        for _ in range(BLOCKS):
            with track_queries() as allowed:
                with allow:
                    raw_n_plus_one()
            with track_queries() as flagged:
                raw_n_plus_one()  # the allowance ended with its block
            seen.append((len(allowed.n_plus_one), len(flagged.n_plus_one)))

    in_threads(work)
    assert seen == [(0, 1)] * (THREADS * BLOCKS)


# --- one instance, many asyncio tasks ----------------------------------------------------------


def test_one_query_budget_shared_by_asyncio_tasks():
    budget = query_budget(max_queries=1, n_plus_one="ignore")

    async def block(i: int) -> int:
        async with budget as report:
            await Author.objects.acount()
            await asyncio.sleep(0)  # let the other tasks enter the same instance
            if i % 2:
                await sync_to_async(one_query)()
        return report.count

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(block(i) for i in range(60)), return_exceptions=True
        )

    results = async_to_sync(run)()
    assert [type(r).__name__ for r in results[::2]] == ["int"] * 30
    assert set(results[::2]) == {1}
    assert all(isinstance(r, QueryBudgetExceeded) for r in results[1::2])
    assert {r.count for r in results[1::2]} == {2}


def test_one_query_budget_decorator_shared_by_asyncio_tasks():
    @query_budget(max_queries=1, n_plus_one="ignore")
    async def view(i: int) -> None:
        await Author.objects.acount()
        await asyncio.sleep(0)
        await sync_to_async(one_query)()

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(view(i) for i in range(40)), return_exceptions=True
        )

    results = async_to_sync(run)()
    assert all(isinstance(r, QueryBudgetExceeded) for r in results)
    assert {r.count for r in results} == {2}


def test_one_track_queries_shared_by_asyncio_tasks_nested_in_a_parent_block():
    tracker = track_queries()

    async def child(n: int) -> int:
        async with tracker as report:
            for _ in range(n):
                await sync_to_async(one_query)()
                await asyncio.sleep(0)
        return report.count

    async def run() -> tuple[list[int], QueryReport]:
        async with tracker as parent:
            counts = await asyncio.gather(*(child(i % 3) for i in range(30)))
        return counts, parent

    counts, parent = async_to_sync(run)()
    assert counts == [i % 3 for i in range(30)]
    assert parent.count == sum(counts)


@pytest.mark.urls("tests.testapp.urls")
@pytest.mark.parametrize("path", ["/budgeted/", "/budgeted/decorated/"])
def test_async_view_sharing_one_query_budget_under_concurrent_requests(
    async_client, path
):
    async def run() -> list[Any]:
        return await asyncio.gather(
            *(async_client.get(path + ("?over=1" if i % 2 else "")) for i in range(30))
        )

    responses = async_to_sync(run)()
    assert [r.status_code for r in responses[::2]] == [200] * 15
    assert [r.status_code for r in responses[1::2]] == [429] * 15
    assert [r.json() for r in responses[1::2]] == [{"count": 2, "budget": 1}] * 15


# --- one instance, recursion -------------------------------------------------------------------


def test_shared_query_budget_in_recursion():
    budget = query_budget(max_queries=3, n_plus_one="ignore")
    reports: list[QueryReport] = []

    def walk(depth: int) -> None:
        with budget as report:
            reports.append(report)
            one_query()
            if depth:
                walk(depth - 1)

    walk(2)  # 3, 2 and 1 queries: within budget at every level
    assert [r.count for r in reports] == [3, 2, 1]
    with pytest.raises(QueryBudgetExceeded) as info:
        walk(3)
    assert (info.value.count, info.value.budget) == (4, 3)


def test_query_budget_decorator_in_recursion():
    @query_budget(max_queries=3, n_plus_one="ignore")
    def walk(depth: int) -> int:
        one_query()
        return 1 + (walk(depth - 1) if depth else 0)

    assert walk(2) == 3
    with pytest.raises(QueryBudgetExceeded, match="4 queries in .*walk") as info:
        walk(3)
    assert info.value.count == 4


def test_shared_track_queries_and_allow_in_recursion():
    tracker = track_queries()
    allow = allow_n_plus_one()
    reports: list[QueryReport] = []

    def walk(depth: int) -> None:
        with tracker as report, allow:
            reports.append(report)
            raw_n_plus_one()
            if depth:
                walk(depth - 1)

    walk(2)
    assert [r.count for r in reports] == [12, 8, 4]
    assert [r.n_plus_one for r in reports] == [[], [], []]
    with track_queries() as after:
        raw_n_plus_one()
    assert len(after.n_plus_one) == 1


@allow_n_plus_one()
def allowed_recursively(depth: int) -> None:
    raw_n_plus_one()
    if depth:
        allowed_recursively(depth - 1)


def test_allow_n_plus_one_decorator_in_recursion():
    with track_queries() as report:
        allowed_recursively(2)
        raw_n_plus_one()  # outside the decorated function: flagged
    assert report.count == 16
    assert [f.count for f in report.n_plus_one] == [4]


# --- blocks left out of order ------------------------------------------------------------------


def test_out_of_order_exits_leave_nothing_recording():
    a, b = track_queries(), track_queries()
    ra = a.__enter__()
    one_query()
    rb = b.__enter__()
    one_query()
    a.__exit__(None, None, None)  # a first, while b is still open
    one_query()  # b only
    b.__exit__(None, None, None)
    one_query()  # nobody
    with track_queries() as later:
        one_query()
    assert (ra.count, rb.count, later.count) == (2, 2, 1)
    assert active_unit() is None


def test_out_of_order_exits_inside_an_outer_block():
    with track_queries() as outer:
        a, b, c = track_queries(), track_queries(), track_queries()
        ra, rb, rc = a.__enter__(), b.__enter__(), c.__enter__()
        one_query()  # all four
        b.__exit__(None, None, None)
        one_query()  # outer, a, c
        a.__exit__(None, None, None)
        one_query()  # outer, c
        c.__exit__(None, None, None)
        one_query()  # outer
    one_query()
    assert (outer.count, ra.count, rb.count, rc.count) == (4, 2, 1, 3)
    assert active_unit() is None


def test_an_exception_between_blocks():
    b = track_queries()
    with pytest.raises(ZeroDivisionError):
        with track_queries() as ra:
            rb = b.__enter__()
            one_query()
            1 / 0
    one_query()  # b is still open
    b.__exit__(None, None, None)
    one_query()
    assert (ra.count, rb.count) == (1, 2)
    assert active_unit() is None


def test_a_query_budget_left_open_by_an_exception_still_checks_its_block():
    outer = query_budget(max_queries=1, n_plus_one="ignore")
    inner = query_budget(max_queries=5, n_plus_one="ignore")
    outer.__enter__()
    inner.__enter__()
    one_query()
    one_query()
    with pytest.raises(QueryBudgetExceeded, match="2 queries, over the budget of 1"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)  # within its own budget
    one_query()
    assert active_unit() is None


def test_a_generator_suspended_inside_a_block():
    def rows() -> Iterator[QueryReport]:
        with track_queries() as report:
            yield report
            one_query()
            yield report

    gen = rows()
    with pytest.warns(RuntimeWarning, match=r"open across a `yield`"):
        inner = next(gen)
    with track_queries() as outer:
        next(gen)
        gen.close()  # the generator's block ends while outer is the current one
        one_query()
    one_query()
    assert (inner.count, outer.count) == (1, 2)
    assert active_unit() is None


def test_an_async_generator_resumed_in_other_tasks():
    async def rows():
        async with track_queries() as report:
            yield report
            await sync_to_async(one_query)()
            yield report

    async def run() -> tuple[QueryReport, QueryReport, Unit | None]:
        gen = rows()

        async def step() -> QueryReport:
            return await anext(gen)

        async with track_queries() as outer:
            with pytest.warns(RuntimeWarning, match=r"open across a `yield`"):
                inner = await asyncio.create_task(step())  # entered in one task
            await asyncio.create_task(step())
            await asyncio.create_task(gen.aclose())  # exited in a third one
            await sync_to_async(one_query)()
        await sync_to_async(one_query)()
        return inner, outer, active_unit()

    inner, outer, active = async_to_sync(run)()
    # The block's query ran in a task where the generator's unit was not current: it
    # belongs to the context that ran it (outer), as ContextVars define.
    assert (inner.count, outer.count) == (0, 2)
    assert active is None


def test_exited_in_another_thread():
    tracker = track_queries()
    report = tracker.__enter__()
    one_query()
    worker = threading.Thread(target=tracker.__exit__, args=(None, None, None))
    worker.start()
    worker.join()
    one_query()  # the unit is closed: this thread's stale value is dropped
    assert report.count == 1
    assert active_unit() is None


def test_allow_n_plus_one_out_of_order():
    a, b = allow_n_plus_one(), allow_n_plus_one()
    with track_queries() as during:
        a.__enter__()
        b.__enter__()
        a.__exit__(None, None, None)
        raw_n_plus_one()  # b still allows it
        b.__exit__(None, None, None)
    with track_queries() as after:
        raw_n_plus_one()  # nothing allows it any more
    assert during.n_plus_one == []
    assert [f.count for f in after.n_plus_one] == [4]


def test_exit_without_enter_is_an_error():
    with pytest.raises(RuntimeError, match="track_queries.*exited without"):
        track_queries().__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="allow_n_plus_one.*exited without"):
        allow_n_plus_one().__exit__(None, None, None)
    tracker = track_queries()
    with tracker:
        pass
    with pytest.raises(RuntimeError, match="exited without"):
        tracker.__exit__(None, None, None)


def test_out_of_order_exits_do_not_grow_memory():
    def once() -> None:
        a, b, c = track_queries(), track_queries(), allow_n_plus_one()
        a.__enter__()
        c.__enter__()
        b.__enter__()
        one_query()
        a.__exit__(None, None, None)
        c.__exit__(None, None, None)
        one_query()
        b.__exit__(None, None, None)

    once()
    before = live_units()
    for _ in range(200):
        once()
    assert live_units() == before
    assert active_unit() is None


def test_a_shared_instance_does_not_keep_unexited_entries_alive():
    shared, allow = track_queries(), allow_n_plus_one()

    def abandoned() -> None:  # entered in a context that is then thrown away
        contextvars.copy_context().run(shared.__enter__)
        contextvars.copy_context().run(allow.__enter__)

    abandoned()
    before = live_units()
    for _ in range(200):
        abandoned()
    assert live_units() == before
    for _ in range(201):  # a late __exit__ of a collected entry ends nothing: no error
        shared.__exit__(None, None, None)
        allow.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="exited without a matching entry"):
        shared.__exit__(None, None, None)


# --- property: any interleaving of entries, exits and queries ----------------------------------


@st.composite
def schedules(draw: Any) -> tuple[bool, list[tuple[str, int]]]:
    """Enter n blocks in order; exit them in any order, some from another context."""
    n = draw(st.integers(1, 5))
    shared = draw(st.booleans())
    events: list[tuple[str, int]] = []
    entered = 0
    open_ = []
    while entered < n or open_:
        # Progress first, so that hypothesis shrinks towards short schedules.
        kinds = (["exit"] if open_ else []) + (["enter"] if entered < n else [])
        if len(events) < 30:
            kinds.append("query")
        kind = draw(st.sampled_from(kinds))
        if kind == "enter":
            events.append(("enter", entered))
            open_.append(entered)
            entered += 1
        elif kind == "exit":
            # A shared instance exits its most recent entry; separate ones any entry.
            index = open_[-1] if shared else draw(st.sampled_from(open_))
            open_.remove(index)
            where = draw(st.sampled_from(["here", "copy", "empty"]))
            events.append((f"exit-{where}", index))
        else:
            events.append(("query", 0))
    return shared, events


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules())
def test_property_each_block_counts_what_ran_while_it_was_open(schedule):
    shared, events = schedule
    single = track_queries()
    trackers: dict[int, track_queries] = {}
    reports: dict[int, QueryReport] = {}
    expected: dict[int, int] = {}
    open_: set[int] = set()
    for kind, index in events:
        if kind == "enter":
            trackers[index] = single if shared else track_queries()
            reports[index] = trackers[index].__enter__()
            expected[index] = 0
            open_.add(index)
        elif kind.startswith("exit"):
            exit_ = trackers[index].__exit__
            if kind == "exit-copy":
                contextvars.copy_context().run(exit_, None, None, None)
            elif kind == "exit-empty":
                contextvars.Context().run(exit_, None, None, None)
            else:
                exit_(None, None, None)
            open_.discard(index)
        else:
            one_query()
            for i in open_:
                expected[i] += 1
    if all(kind in ("enter", "exit-here", "query") for kind, _ in events):
        assert active_unit() is None  # not even a closed unit left in this context
    one_query()  # after every exit: counted nowhere
    assert {i: r.count for i, r in reports.items()} == expected
    assert active_unit() is None
