"""One reaction path: the same finding gets the same error, warning or log record from
every entry point (the middleware, ``query_budget``, ``track_queries`` + ``enforce`` and
the pytest plugin), in one documented precedence."""

from __future__ import annotations

import contextlib
import logging
import textwrap

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import path

from django_dbtuning import (
    DuplicateQueriesError,
    DuplicateQueriesWarning,
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
    QueryBudgetWarning,
    QueryProblemError,
    QueryProblemWarning,
    query_budget,
    track_queries,
)
from django_dbtuning.queries import Policy, enforce
from tests.queries.helpers import SCENARIOS
from tests.queries.test_pytest_plugin import run_pytest
from tests.testapp.models import Author, Book, Publisher

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"
BUDGET = 2  # the budget scenario runs three statements

ERRORS = {
    "n_plus_one": NPlusOneError,
    "duplicates": DuplicateQueriesError,
    "budget": QueryBudgetExceeded,
}
WARNINGS = {
    "n_plus_one": NPlusOneWarning,
    "duplicates": DuplicateQueriesWarning,
    "budget": QueryBudgetWarning,
}


def scenario_view(request, kinds):
    for kind in kinds.split("+"):
        SCENARIOS[kind]()
    return HttpResponse("ok")


urlpatterns = [path("scenario/<str:kinds>/", scenario_view, name="scenario")]


@pytest.fixture
def books():
    publisher = Publisher.objects.create(name="P")
    for i in range(3):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)


def policy_for(reactions: dict[str, str], with_budget: bool) -> Policy:
    return Policy(
        n_plus_one=reactions.get("n_plus_one", "ignore"),
        duplicates=reactions.get("duplicates", "ignore"),
        max_queries=BUDGET if with_budget else None,
        over_budget=reactions.get("budget", "ignore"),
    )


def run(where: str, kinds: list[str], reactions: dict[str, str], dbtuning) -> None:
    """Run the scenarios of ``kinds`` in one unit of work entered through ``where``."""
    policy = policy_for(reactions, "budget" in kinds)

    def body() -> None:
        for kind in kinds:
            SCENARIOS[kind]()

    if where == "middleware":
        dbtuning(
            ON_N_PLUS_ONE=policy.n_plus_one,
            ON_DUPLICATE=policy.duplicates,
            QUERY_BUDGET=policy.max_queries,
            ON_QUERY_BUDGET=policy.over_budget,
        )
        Client().get(f"/scenario/{'+'.join(kinds)}/")
    elif where == "query_budget":
        query_budget(
            policy.max_queries,
            policy.n_plus_one,
            duplicates=policy.duplicates,
            over_budget=policy.over_budget,
        )(body)()
    else:
        with track_queries() as report:
            body()
        enforce(report, policy, "a task")


def logged_kinds(caplog) -> list[str]:
    kinds = []
    for record in caplog.records:
        if record.name != "django_dbtuning.queries":
            continue
        finding = getattr(record, "finding", None)
        if finding is not None:
            kinds.append("duplicates" if finding.kind == "duplicate" else "n_plus_one")
        elif hasattr(record, "query_budget"):
            kinds.append("budget")
    return kinds


WHERE = ["middleware", "query_budget", "track_queries"]


@pytest.fixture(autouse=True)
def with_middleware(settings):
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]


@pytest.mark.parametrize("kind", list(SCENARIOS))
@pytest.mark.parametrize("where", WHERE)
def test_raise_raises_the_kinds_error(books, dbtuning, where, kind):
    with pytest.raises(ERRORS[kind]) as info:
        run(where, [kind], {kind: "raise"}, dbtuning)
    assert type(info.value) is ERRORS[kind]
    lead = {
        "n_plus_one": "1 N+1 finding(s) in ",
        "duplicates": "1 duplicate query finding(s) in ",
        "budget": f"{BUDGET + 1} queries in ",
    }[kind]
    assert str(info.value).startswith(lead)


@pytest.mark.parametrize("kind", list(SCENARIOS))
@pytest.mark.parametrize("where", WHERE)
def test_warn_warns_with_the_kinds_warning_and_logs(
    books, dbtuning, caplog, where, kind
):
    # caplog's handler is on the root logger, so the record has somewhere to go.
    with (
        caplog.at_level(logging.WARNING, logger="django_dbtuning"),
        pytest.warns(QueryProblemWarning) as caught,
    ):
        run(where, [kind], {kind: "warn"}, dbtuning)
    assert [type(w.message) for w in caught] == [WARNINGS[kind]]
    assert logged_kinds(caplog) == [kind]


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def no_root_handlers():
    """A process without LOGGING for the root logger (pytest's capture handlers sit there)."""
    saved = logging.root.handlers[:]
    for handler in saved:
        logging.root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in saved:
            logging.root.addHandler(handler)


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_warn_logs_only_when_a_handler_would_receive_the_record(
    books, dbtuning, monkeypatch, kind
):
    # A new project (no LOGGING): the record would reach Python's last-resort handler and
    # print the warning's text a second time on the console, so the warning goes alone.
    last_resort = Recorder()
    monkeypatch.setattr(logging, "lastResort", last_resort)
    with no_root_handlers():
        with pytest.warns(WARNINGS[kind]):
            run("track_queries", [kind], {kind: "warn"}, dbtuning)
        assert last_resort.records == []

        # A handler for django_dbtuning (a file, an aggregator) gets the record as well.
        ours = Recorder()
        package = logging.getLogger("django_dbtuning")
        package.addHandler(ours)
        try:
            with pytest.warns(WARNINGS[kind]):
                run("track_queries", [kind], {kind: "warn"}, dbtuning)
        finally:
            package.removeHandler(ours)
        assert [r.name for r in ours.records] == ["django_dbtuning.queries"]
        assert last_resort.records == []

        # "log" logs whatever is configured: with nothing, Python's last resort prints it.
        run("track_queries", [kind], {kind: "log"}, dbtuning)
        assert len(last_resort.records) == 1


@pytest.mark.parametrize("kind", list(SCENARIOS))
@pytest.mark.parametrize("where", WHERE)
def test_log_logs_one_record_per_finding(books, dbtuning, caplog, where, kind):
    with caplog.at_level(logging.WARNING, logger="django_dbtuning"):
        run(where, [kind], {kind: "log"}, dbtuning)  # a warning would fail the test
    assert logged_kinds(caplog) == [kind]
    (record,) = [r for r in caplog.records if r.name == "django_dbtuning.queries"]
    assert record.levelno == logging.WARNING


PLUGIN_TESTS = textwrap.dedent(
    """
    import pytest
    from tests.queries.helpers import SCENARIOS
    from tests.testapp.models import Author, Book, Publisher

    pytestmark = [pytest.mark.django_db, pytest.mark.no_n_plus_one]


    @pytest.fixture(autouse=True)
    def books():
        publisher = Publisher.objects.create(name="P")
        for i in range(3):
            author = Author.objects.create(name=f"A{i}", publisher=publisher)
            Book.objects.create(title=f"B{i}", author=author)


    @pytest.mark.parametrize("kind", sorted(SCENARIOS))
    def test_scenario(kind):
        SCENARIOS[kind]()
    """
)


def test_the_pytest_plugin_raises_n_plus_one_error_for_n_plus_ones_only(tmp_path):
    # The plugin's one reaction: a marked test fails on an N+1 ("raise"); duplicates and
    # budgets are left to the middleware and query_budget.
    code, output = run_pytest(tmp_path, tests=PLUGIN_TESTS)
    assert code == 1, output
    assert "::test_scenario[n_plus_one] - django_dbtuning.NPlusOneError" in output
    assert "NPlusOneError: 1 N+1 finding(s) in " in output, output
    assert "2 passed" in output, output


@pytest.mark.parametrize("where", WHERE)
def test_precedence_n_plus_one_then_duplicates_then_budget(books, dbtuning, where):
    everything = {"n_plus_one": "raise", "duplicates": "raise", "budget": "raise"}
    with pytest.raises(NPlusOneError):
        run(where, ["n_plus_one", "duplicates", "budget"], everything, dbtuning)
    with pytest.raises(DuplicateQueriesError):
        run(where, ["duplicates", "budget"], everything, dbtuning)


@pytest.mark.parametrize("where", WHERE)
def test_kinds_before_the_raising_one_have_reacted(books, dbtuning, caplog, where):
    reactions = {"n_plus_one": "warn", "duplicates": "log", "budget": "raise"}
    with (
        caplog.at_level(logging.WARNING, logger="django_dbtuning"),
        pytest.warns(NPlusOneWarning),
        pytest.raises(QueryBudgetExceeded),
    ):
        run(where, ["n_plus_one", "duplicates", "budget"], reactions, dbtuning)
    assert logged_kinds(caplog) == ["n_plus_one", "duplicates"]


def test_one_base_per_family_and_duplicates_are_not_n_plus_ones():
    for error in ERRORS.values():
        assert issubclass(error, QueryProblemError)
    for warning in WARNINGS.values():
        assert issubclass(warning, QueryProblemWarning)
        assert issubclass(warning, UserWarning)
    assert not issubclass(DuplicateQueriesError, NPlusOneError)
    assert not issubclass(QueryBudgetWarning, NPlusOneWarning)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_queries": True}, "max_queries must be an int >= 0 or None, not True"),
        ({"over_budget": "fail"}, "over_budget must be 'warn', 'log', 'raise' or"),
    ],
)
def test_policy_rejects_wrong_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Policy(**kwargs)


def test_policy_from_settings(dbtuning, settings):
    dbtuning(ON_DUPLICATE="warn", QUERY_BUDGET=7)
    settings.DEBUG = False
    assert Policy.from_settings() == Policy("log", "warn", 7, "log")
