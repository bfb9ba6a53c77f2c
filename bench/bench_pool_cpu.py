"""CPU per request of each connection strategy, in one process: what wall-clock load hides.

Each strategy is one alias of one Django process; a "request" is what Django does for the
example shop's `/api/products/count/` view around its database: `request_started`, the
view's one query (`Product.objects.count()`), `request_finished` (which returns a pooled
connection, or keeps a persistent one). The figure is the process CPU time
(`time.process_time()`: Django, psycopg and the pool's threads; not PostgreSQL's) per
request. Strategies alternate inside each round, in a rotating order, and the medians are
reported, with the median of the per-round differences to `CONN_MAX_AGE=600`. Unlike
requests/s under wrk, these figures barely move when other programs share the machine.

A fifth row, the same pooled entry on Django's own ENGINE, shows what
`django_dbtuning.pool.postgresql` saves per checkout.

Run: `.venv/bin/python bench/bench_pool_cpu.py` (also `make bench BENCH_ARGS=pool`).
`--profile` prints a cProfile top list (CPU time) of the pool's requests instead.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_pool import LABELS, STRATEGIES, prepare_server  # noqa: E402

DJANGO_ENGINE = "pool-django-engine"
ALIASES = (*STRATEGIES, DJANGO_ENGINE)
NAMES = {
    **LABELS,
    DJANGO_ENGINE: "the same pool on Django's ENGINE (`django.db.backends.postgresql`)",
}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3")) * 3
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "2000"))


def _databases(url: str) -> dict[str, dict[str, Any]]:
    from django_dbtuning.pool import database

    pooled = database(url, processes=1, threads=1)
    return {
        "default": database(url, pool=False, conn_max_age=0, health_checks=False),
        "django-default": database(
            url, pool=False, conn_max_age=0, health_checks=False
        ),
        "conn-max-age": database(
            url, pool=False, conn_max_age=600, health_checks=False
        ),
        "conn-max-age-checks": database(url, pool=False, conn_max_age=600),
        "dbtuning-pool": pooled,
        DJANGO_ENGINE: {**pooled, "ENGINE": "django.db.backends.postgresql"},
    }


def _setup(url: str) -> None:
    sys.path.insert(0, str(ROOT / "example_project"))
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_dbtuning", "shop"],
        DATABASES=_databases(url),
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    import django

    django.setup()


def _requests(alias: str, count: int) -> None:
    from django.core import signals
    from shop.models import Product

    for _ in range(count):
        signals.request_started.send(sender=None)
        Product.objects.using(alias).count()
        signals.request_finished.send(sender=None)


def child(url: str, profile: bool) -> None:
    """Every alias in this process, alternating; print one JSON line."""
    _setup(url)
    for alias in ALIASES:
        _requests(alias, 200)  # warm up: imports, the pool, the caches
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        _requests("dbtuning-pool", REQUESTS)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("cumulative").print_stats(50)
        return
    cpu: dict[str, list[float]] = {alias: [] for alias in ALIASES}
    for round_ in range(ROUNDS):
        shift = round_ % len(ALIASES)
        for alias in ALIASES[shift:] + ALIASES[:shift]:
            started = time.process_time()
            _requests(alias, REQUESTS)
            cpu[alias].append((time.process_time() - started) / REQUESTS * 1e6)
    print(json.dumps(cpu))


def _print(cpu: dict[str, list[float]]) -> None:
    base = cpu["conn-max-age"]
    print(
        f"CPU per request in one process: `request_started`, the view's query, "
        f"`request_finished`; {REQUESTS} requests per strategy per round, {ROUNDS} rounds "
        "(strategies alternate); process CPU time (Django, psycopg, the pool's threads; "
        "not PostgreSQL's).\n"
    )
    print("| strategy | CPU µs/request | vs CONN_MAX_AGE=600 | difference µs |")
    print("| --- | ---: | ---: | ---: |")
    for alias in ALIASES:
        median = statistics.median(cpu[alias])
        diff = statistics.median(a - b for a, b in zip(cpu[alias], base, strict=True))
        print(
            f"| {NAMES[alias]} | {median:.0f} | {median / statistics.median(base):.2f}x "
            f"| {diff:+.0f} |"
        )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(argv[1], profile=argv[2:] == ["--profile"])
        return
    server, url = prepare_server(100)
    try:
        result = subprocess.run(
            [sys.executable, __file__, "--child", url, *argv[:1]],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.stop()
    if argv[:1] == ["--profile"]:
        print(result.stdout)
        return
    _print(json.loads(result.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main(sys.argv[1:])
