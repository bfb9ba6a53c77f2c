"""Settings for bench_pool.py: the example shop with one of four connection strategies."""

from __future__ import annotations

import os

from config.settings import *  # noqa: F403

from django_dbtuning.pool import database

MODE = os.environ["BENCH_DB_MODE"]
URL = os.environ["DATABASE_URL"]
DEBUG = False
MIDDLEWARE: list[str] = []  # measure connection handling, nothing else
# Failed requests' tracebacks go to gunicorn's log, where the benchmark counts them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}

if MODE == "django-default":
    # What Django does with a plain DATABASES dict: a new connection per request.
    DATABASES = {
        "default": database(URL, pool=False, conn_max_age=0, health_checks=False)
    }
elif MODE == "conn-max-age":
    DATABASES = {
        "default": database(URL, pool=False, conn_max_age=600, health_checks=False)
    }
elif MODE == "conn-max-age-checks":
    # database(pool=False): persistent connections as safe as the pool's.
    DATABASES = {"default": database(URL, pool=False, conn_max_age=600)}
elif MODE == "dbtuning-pool":
    DATABASES = {
        "default": database(
            URL,
            processes=int(os.environ["BENCH_WORKERS"]),
            threads=int(os.environ["BENCH_THREADS"]),
            server_max_connections=int(os.environ["BENCH_MAX_CONNECTIONS"]),
        )
    }
else:  # pragma: no cover
    raise SystemExit(f"unknown BENCH_DB_MODE {MODE!r}")
