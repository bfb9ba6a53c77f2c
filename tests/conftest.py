from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests explore new inputs on every developer run; CI (HYPOTHESIS_PROFILE=ci, set by
# .ci/run) replays a fixed sequence, so a submission is judged on the same examples every time
# and a rare new counterexample shows up on a developer's machine, not as a flaky gate.
settings.register_profile(
    "ci", derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, in one line, when the configured server cannot be reached."""
    import psycopg
    from django.conf import settings

    from django_dbtuning.pool import connection_kwargs, redact_url

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(**{**connection_kwargs(db), "dbname": "postgres"}).close()
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            return  # the server answered; Django creates the test database elsewhere
        where = redact_url(
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        pytest.exit(
            f"error: cannot reach PostgreSQL at {where} ({reason}); start it, fix "
            "DATABASE_URL, or unset DATABASE_URL to use the embedded server",
            returncode=2,
        )


@pytest.fixture
def dbtuning(settings):
    """Set DBTUNING keys for one test: ``dbtuning(N_PLUS_ONE_THRESHOLD=2)``."""

    def apply(**values):
        settings.DBTUNING = {**getattr(settings, "DBTUNING", {}), **values}
        return settings.DBTUNING

    return apply
