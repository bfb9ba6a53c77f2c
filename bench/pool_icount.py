"""Instructions per request of each connection strategy, counted by valgrind: no noise.

A "request" is `request_started`, one `SELECT 1` through a Django cursor, and
`request_finished` (which returns a pooled connection, or keeps a persistent one). For each
alias, the same process runs under `valgrind --tool=callgrind` twice, with 0 and with
`ICOUNT_REQUESTS` requests after a warm-up; the difference divided by the count is the
user-space instructions one request costs in this process (Django, psycopg, the pool; not
PostgreSQL's). The figures repeat to a fraction of a percent from run to run, unlike
requests/s or CPU time on a shared machine.

The pools are sized for 4 threads (two idle connections at least), so the order in which
the pool hands out its idle connections shows. `--cache` adds valgrind's cache simulation
and prints data-cache misses per request too (first level, last level): what a pool that
hands back the connection a thread used last saves lies there, not in instructions.

Run: `.venv/bin/python bench/pool_icount.py [--cache] [alias ...]` (needs valgrind:
`apt-get install valgrind`). Aliases: persistent, pool, pool-django-engine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

ALIASES = ("persistent", "pool", "pool-django-engine")
REQUESTS = int(os.environ.get("ICOUNT_REQUESTS", "1000"))
COUNTERS = ("Ir", "D1mr", "D1mw", "DLmr", "DLmw")


def _databases(url: str) -> dict[str, dict[str, Any]]:
    from django_dbtuning.pool import database

    pooled = database(url, processes=1, threads=4)
    return {
        "default": database(url, pool=False, conn_max_age=0, health_checks=False),
        "persistent": database(url, pool=False, conn_max_age=600, health_checks=False),
        "pool": pooled,
        "pool-django-engine": {**pooled, "ENGINE": "django.db.backends.postgresql"},
    }


def child(url: str, alias: str, count: int) -> None:
    """Warm up, then run `count` requests on `alias` (what valgrind counts)."""
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_dbtuning"], USE_TZ=True, DATABASES=_databases(url)
    )
    import django

    django.setup()
    from django.core import signals
    from django.db import connections

    wrapper = connections[alias]

    def requests(n: int) -> None:
        for _ in range(n):
            signals.request_started.send(sender=None)
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT 1")
            signals.request_finished.send(sender=None)

    requests(200)
    requests(count)


def _counts(url: str, alias: str, count: int, cache: bool) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *(["--cache-sim=yes"] if cache else []),
            sys.executable,
            __file__,
            "--child",
            url,
            alias,
            str(count),
        ]
        subprocess.run(command, check=True, capture_output=True)
        text = out.read_text()
    events = re.search(r"^events: (.*)$", text, re.M)
    totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M)
    assert events and totals, "no totals in callgrind's output"
    return dict(zip(events[1].split(), map(int, totals[1].split()), strict=False))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    cache = "--cache" in argv
    aliases = [a for a in argv if a != "--cache"] or list(ALIASES)
    from bench_pool import prepare_server

    server, url = prepare_server(100)
    try:
        print(
            f"Per request ({REQUESTS} requests, warm-up excluded), under callgrind:\n"
        )
        names = [c for c in COUNTERS if cache or c == "Ir"]
        print("| alias | " + " | ".join(names) + " |")
        print("| --- |" + " ---: |" * len(names))
        for alias in aliases:
            zero = _counts(url, alias, 0, cache)
            many = _counts(url, alias, REQUESTS, cache)
            row = [(many[c] - zero[c]) / REQUESTS for c in names]
            print(f"| {alias} | " + " | ".join(f"{round(v):,}" for v in row) + " |")
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
