"""Per-query overhead of N+1 detection: dbtuning's middleware vs none, zeal and the toolbar.

Standalone: ``.venv/bin/python bench/bench_nplusone.py`` (embedded PostgreSQL unless
DATABASE_URL). One process, one database; every variant runs the same 200-query N+1 view
(``for book in books: book.author.name``) through its own instrumentation, in alternating
rounds, and the table reports medians. The overhead per query is (variant - baseline) / 200.

* baseline: the view alone (dbtuning's recorder removed from the connection);
* an empty ``execute_wrapper``: the floor of any detector built on Django's public hook;
* dbtuning: ``QueryCountMiddleware`` around the view (detection, attribution, headers; the
  finding is computed but ``ON_N_PLUS_ONE="ignore"`` keeps the log quiet);
* dbtuning with ``UNUSED_EAGER_LOADS`` on, inside ``override_settings`` (the capture installed
  at the request's start, removed when the override ends), next to the same override with
  the setting off: the difference is the tracking's cost per query on a view without eager
  loads; its cost per eager-loaded object is measured apart, at the end;
* django-zeal: ``zeal_context()`` around the view (``ZEAL_RAISE=False``, warnings ignored);
* debug toolbar: the SQL panel's instrumentation plus its ``generate_stats`` grouping.

zeal patches the ORM at start-up, so every variant (the baseline too) carries its dormant
hooks; they cost one ContextVar read per relation access.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUERIES = 200
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "120"))
DB_NAME = "dbtuning_bench_nplusone"


def configure() -> None:
    import psycopg
    from django.conf import settings

    from django_dbtuning.embedded import database_url
    from django_dbtuning.pool import database

    entry = database(database_url(), pool=False, conn_max_age=600)
    admin = psycopg.connect(
        host=entry["HOST"],
        port=entry["PORT"] or None,
        user=entry["USER"],
        password=entry["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    admin.close()
    entry["NAME"] = DB_NAME
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        DATABASES={"default": entry},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.staticfiles",
            "debug_toolbar",
            "zeal",
            "django_dbtuning",
            "tests.testapp",
        ],
        ROOT_URLCONF="tests.urls",
        STATIC_URL="/static/",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
            }
        ],
        DBTUNING={
            "ON_N_PLUS_ONE": "ignore",
            "ON_DUPLICATE": "ignore",
            "METRICS": False,
        },
        ZEAL_RAISE=False,
        DEBUG_TOOLBAR_CONFIG={"SHOW_TOOLBAR_CALLBACK": lambda request: True},
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()


def seed() -> None:
    from django.core.management import call_command

    from tests.testapp.models import Author, Book, Publisher

    call_command("migrate", verbosity=0)
    publisher = Publisher.objects.create(name="P")
    authors = Author.objects.bulk_create(
        [Author(name=f"Author {i}", publisher=publisher) for i in range(QUERIES)]
    )
    Book.objects.bulk_create(
        [
            Book(title=f"Book {i}", author=a)
            for i, a in enumerate(authors[: QUERIES - 1])
        ]
    )


def view(request: Any) -> Any:
    from django.http import HttpResponse

    from tests.testapp.models import Book

    names = [book.author.name for book in Book.objects.all()]
    return HttpResponse(str(len(names)))


def variants() -> dict[str, Any]:
    from debug_toolbar.toolbar import DebugToolbar
    from django.conf import settings
    from django.db import connection
    from django.test import RequestFactory, override_settings
    from zeal import zeal_context

    from django_dbtuning.middleware import QueryCountMiddleware
    from django_dbtuning.queries.recorder import RECORDER, install

    request = RequestFactory().get("/books/")
    middleware = QueryCountMiddleware(view)

    def without_recorder() -> None:
        while RECORDER in connection.execute_wrappers:
            connection.execute_wrappers.remove(RECORDER)

    def baseline() -> None:
        without_recorder()
        view(request)

    def noop_wrapper(
        execute: Any, sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        return execute(sql, params, many, context)

    def hook_only() -> None:
        without_recorder()
        with connection.execute_wrapper(noop_wrapper):
            view(request)

    def dbtuning() -> None:
        install()
        response = middleware(request)
        assert response["X-DB-Query-Count"] == str(QUERIES)
        without_recorder()

    eager_on = override_settings(
        DBTUNING={**settings.DBTUNING, "UNUSED_EAGER_LOADS": True}
    )

    same = override_settings(DBTUNING={**settings.DBTUNING})

    def dbtuning_eager() -> None:
        # The setting's whole lifecycle per round: installed at the request's start,
        # removed when the override ends (so the other variants run without it).
        with eager_on:
            dbtuning()

    def dbtuning_override() -> None:
        # The same override_settings round trip with the setting off: subtract this row
        # from the one above for the cost of the tracking alone.
        with same:
            dbtuning()

    def zeal() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zeal_context():
                view(request)

    def toolbar() -> None:
        toolbar = DebugToolbar(request, view)
        panel = toolbar.get_panel_by_id("SQLPanel")
        panel.enable_instrumentation()
        try:
            response = view(request)
        finally:
            panel.disable_instrumentation()
        panel.generate_stats(request, response)
        assert len(panel._queries) == QUERIES

    return {
        "no instrumentation (baseline)": baseline,
        "an empty execute_wrapper (Django's hook alone)": hook_only,
        "django-dbtuning QueryCountMiddleware": dbtuning,
        "django-dbtuning in override_settings (UNUSED_EAGER_LOADS off)": dbtuning_override,
        "django-dbtuning in override_settings, UNUSED_EAGER_LOADS on": dbtuning_eager,
        "django-zeal (zeal_context)": zeal,
        "debug toolbar SQL panel": toolbar,
    }


def recorder_only_cost() -> float:
    """The recorder's own cost per query with a stub database call (no I/O noise)."""
    from django_dbtuning import track_queries
    from django_dbtuning.queries.recorder import RECORDER

    class Connection:
        alias = "default"

    context = {"connection": Connection(), "cursor": None}
    sql = 'SELECT "t"."id" FROM "t" WHERE "t"."id" = %s LIMIT 21'

    def execute(sql: str, params: Any, many: bool, context: Any) -> None:
        return None

    def loop(n: int) -> None:
        for i in range(n):
            RECORDER(execute, sql, (i,), False, context)

    samples = []
    for _ in range(15):
        with track_queries():
            start = time.perf_counter()
            loop(QUERIES)
            with_recorder = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(QUERIES):
            execute(sql, (i,), False, context)
        bare = time.perf_counter() - start
        samples.append((with_recorder - bare) / QUERIES)
    return statistics.median(samples)


def in_situ_costs() -> dict[str, float]:
    """The recorder's own time per query inside the view's ORM loop, and an N+1's
    attribution per finding.

    Two timing wrappers sit around the recorder in Django's wrapper chain (outer, recorder,
    inner): outer minus inner is the recorder's own time, per query, with the caches and
    stack of a real request; the same chain with an empty wrapper in the recorder's place
    is subtracted. Unlike the per-request CPU difference above, this is not drowned by the
    ±25 ms the VM's requests vary by, so it shows a few tenths of a µs.
    """
    from django.db import connection
    from django.test import RequestFactory

    from django_dbtuning.middleware import QueryCountMiddleware
    from django_dbtuning.queries import recorder

    clock = time.perf_counter

    def timing(times: list[float]) -> Any:
        def wrapper(
            execute: Any, sql: Any, params: Any, many: bool, context: Any
        ) -> Any:
            start = clock()
            try:
                return execute(sql, params, many, context)
            finally:
                times.append(clock() - start)

        return wrapper

    outer_times: list[float] = []
    inner_times: list[float] = []
    outer, inner = timing(outer_times), timing(inner_times)

    def empty(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        return execute(sql, params, many, context)

    attribute = recorder.attribute
    attributions: list[float] = []

    def timed_attribute(*args: Any) -> Any:
        start = clock()
        try:
            return attribute(*args)
        finally:
            attributions.append(clock() - start)

    request = RequestFactory().get("/books/")
    middleware = QueryCountMiddleware(view)

    def own_time(middle: Any) -> float:
        recorder.install()
        connection.execute_wrappers[:] = [outer, middle, inner]
        outer_times.clear()
        inner_times.clear()
        try:
            middleware(request)
        finally:
            connection.execute_wrappers[:] = []
        return statistics.median(
            o - i for o, i in zip(outer_times, inner_times, strict=True)
        )

    recorder.attribute = timed_attribute
    try:
        samples: dict[str, list[float]] = {"recorder": [], "empty": []}
        for round_number in range(ROUNDS // 2 + 3):
            for name, middle in (("recorder", recorder.RECORDER), ("empty", empty)):
                own = own_time(middle)
                if round_number >= 3:  # warm-up rounds
                    samples[name].append(own)
    finally:
        recorder.attribute = attribute
    return {
        "recorder": statistics.median(samples["recorder"])
        - statistics.median(samples["empty"]),
        "attribution": statistics.median(attributions),
    }


def eager_object_cost() -> dict[str, float]:
    """Unused-eager-load tracking per eager-loaded object (and per query without eager
    loads): a unit with it on vs off."""
    from django.conf import settings
    from django.test import override_settings

    from django_dbtuning.queries.units import finish_unit, start_unit
    from tests.testapp.models import Author, Book

    def select_related() -> int:
        return len([b.author.name for b in Book.objects.select_related("author")])

    def prefetch_related() -> int:
        authors = Author.objects.prefetch_related("books")
        return sum(len([b.title for b in a.books.all()]) for a in authors)

    pks = list(Author.objects.values_list("pk", flat=True)[:QUERIES])

    def plain_queries() -> int:  # no eager loads: the wrappers only look and pass
        return len([Author.objects.get(pk=pk) for pk in pks])

    # The setting on for the whole measurement, so the capture stays installed: the two
    # runs differ only in whether their unit tracks eager loads (not in installing it).
    costs = {}
    with override_settings(DBTUNING={**settings.DBTUNING, "UNUSED_EAGER_LOADS": True}):
        for name, run in (
            ("select_related", select_related),
            ("prefetch_related", prefetch_related),
            ("a query without eager loads", plain_queries),
        ):
            samples = []
            for _ in range(31):
                timings = []
                for track in (False, True):
                    unit = start_unit(unused_eager_loads=track)
                    start = time.thread_time()
                    objects = run()
                    timings.append(time.thread_time() - start)
                    finish_unit(unit)
                samples.append((timings[1] - timings[0]) / objects)
            costs[name] = statistics.median(samples)
    return costs


def main() -> None:
    configure()
    seed()
    runs = variants()
    for function in runs.values():  # warm caches, connections, fingerprints
        for _ in range(3):
            function()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_number in range(ROUNDS):
        order = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in order:
            start_cpu, start = time.thread_time(), time.perf_counter()
            runs[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.thread_time() - start_cpu)
    base_wall = statistics.median(wall[names[0]])
    base_cpu = statistics.median(cpu[names[0]])
    print(
        f"{QUERIES}-query N+1 view, {ROUNDS} alternating rounds. Overhead per query is the "
        "median of per-round differences to the baseline run of the same round, in this "
        "thread's CPU time (the instrumentation is pure CPU; pairing runs cancels the load "
        "drifts of a shared machine). Times are medians.\n"
    )
    print(
        "| variant | wall (ms) | CPU (ms) | overhead per query (µs CPU) | "
        "CPU vs baseline | wall vs baseline |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        median_wall = statistics.median(wall[name])
        median_cpu = statistics.median(cpu[name])
        paired = [v - b for v, b in zip(cpu[name], cpu[names[0]], strict=True)]
        per_query = statistics.median(paired) / QUERIES * 1e6
        ratio = 1 + statistics.median(paired) / base_cpu
        print(
            f"| {name} | {median_wall * 1000:.2f} | {median_cpu * 1000:.2f} | "
            f"{'—' if name == names[0] else f'{per_query:+.1f}'} | "
            f"{ratio:.3f}× | {median_wall / base_wall:.3f}× |"
        )
    print(
        f"\nRecorder alone (stub database call, no I/O): "
        f"{recorder_only_cost() * 1e6:.2f} µs per query inside a tracked unit."
    )
    in_situ = in_situ_costs()
    print(
        f"Recorder inside the view's ORM loop (its own time between two timing wrappers, "
        f"minus an empty wrapper's): {in_situ['recorder'] * 1e6:.2f} µs per query; "
        f"an N+1's attribution (stack, relation, provenance for the hint): "
        f"{in_situ['attribution'] * 1e6:.0f} µs per finding, once per call site "
        f"({in_situ['attribution'] / QUERIES * 1e6:.2f} µs per query of this view)."
    )
    costs = eager_object_cost()
    print(
        "Unused-eager-load tracking (UNUSED_EAGER_LOADS on), per eager-loaded object read "
        "once, and per query: "
        + ", ".join(f"{name} {cost * 1e6:+.2f} µs" for name, cost in costs.items())
        + " (CPU, median of paired runs with it off)."
    )


if __name__ == "__main__":
    main()
