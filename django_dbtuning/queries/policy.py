"""The one place that decides how a unit of work reacts to what it found.

Every caller — the middleware at the end of a request (or of a streamed body),
``query_budget`` at the end of a block, a decorated call or generator, the pytest plugin at
the end of a test — builds a :class:`Policy` and hands its report to :func:`enforce`, so
the same situation gives the same exception, warning or log record wherever it happens.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from django_dbtuning.conf import REACTIONS, DbTuningSettings, Reaction, get_settings
from django_dbtuning.exceptions import (
    DuplicateQueriesError,
    DuplicateQueriesWarning,
    NPlusOneError,
    NPlusOneWarning,
    QueryBudgetExceeded,
    QueryBudgetWarning,
    QueryProblemError,
    QueryProblemWarning,
)
from django_dbtuning.queries.eager_findings import log_findings
from django_dbtuning.queries.findings import QueryFinding
from django_dbtuning.queries.fingerprint import display_sql
from django_dbtuning.queries.recorder import internal_error
from django_dbtuning.queries.signals import send_n_plus_one
from django_dbtuning.queries.units import QueryReport
from django_dbtuning.validation import is_int

# One logger for the whole capability (was django_dbtuning.tracking / .middleware).
logger = logging.getLogger("django_dbtuning.queries")

NOT_RAISED = "(logged, not raised: the streamed response had already started)"
"""Appended to a "raise" reaction that comes too late to change the response."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How a unit of work reacts to N+1s, duplicate queries and an exceeded budget.

    Each reaction is ``"raise"``, ``"warn"``, ``"log"`` or ``"ignore"``; ``max_queries``
    None means no budget. The defaults are ``query_budget()``'s; :meth:`from_settings`
    gives the middleware's (``DBTUNING``).
    """

    n_plus_one: Reaction = "raise"
    duplicates: Reaction = "ignore"
    max_queries: int | None = None
    over_budget: Reaction = "raise"

    def __post_init__(self) -> None:
        if self.max_queries is not None and (
            not is_int(self.max_queries) or self.max_queries < 0
        ):
            raise ValueError(
                f"max_queries must be an int >= 0 or None, not {self.max_queries!r}"
            )
        for name in ("n_plus_one", "duplicates", "over_budget"):
            value = getattr(self, name)
            if value not in REACTIONS:
                raise ValueError(
                    f"{name} must be 'warn', 'log', 'raise' or 'ignore', not {value!r}"
                )

    @classmethod
    def from_settings(cls, settings: DbTuningSettings | None = None) -> Policy:
        """``ON_N_PLUS_ONE``, ``ON_DUPLICATE``, ``QUERY_BUDGET``, ``ON_QUERY_BUDGET``."""
        settings = settings or get_settings()
        return cls(
            n_plus_one=settings.n_plus_one_reaction,
            duplicates=settings.on_duplicate,
            max_queries=settings.query_budget,
            over_budget=settings.query_budget_reaction,
        )


def conclude(
    report: QueryReport,
    policy: Policy,
    where: str | None = None,
    *,
    view: str | None = None,
    can_raise: bool = True,
    request: Any = None,
) -> None:
    """The end of a unit of work: its unused eager loads, then :func:`enforce`.

    Unused eager loads (found when the unit tracked them: ``UNUSED_EAGER_LOADS``) are
    info records whatever the policy says, so they go out first; the
    :class:`~django_dbtuning.UnusedEagerLoadWarning` of ``"warn"``, when a warnings filter
    turns it into an error, is raised after the reactions, so a "raise" reaction still
    wins. A bug while judging them is logged once and does not stop the reactions.
    """
    eager_warning: Warning | None = None
    try:
        log_findings(report.unused_eager_loads, where, view)
    except Warning as exc:
        eager_warning = exc
    except Exception:
        internal_error("reporting unused eager loads")
    enforce(report, policy, where, can_raise=can_raise, request=request)
    if eager_warning is not None:
        raise eager_warning


def enforce(
    report: QueryReport,
    policy: Policy,
    where: str | None = None,
    *,
    can_raise: bool = True,
    request: Any = None,
) -> None:
    """React to what ``report`` found as ``policy`` says; ``where`` names the unit.

    Precedence: N+1s first, then duplicate queries, then the budget. Each kind found reacts
    in that order (``"warn"``: a warning per finding, and its log record too when logging
    has a handler for it; ``"log"``: a WARNING record per finding on the
    ``django_dbtuning.queries`` logger; ``"ignore"``: nothing), and the first kind whose
    reaction is ``"raise"`` raises its error (:class:`~django_dbtuning.NPlusOneError`,
    :class:`~django_dbtuning.DuplicateQueriesError`,
    :class:`~django_dbtuning.QueryBudgetExceeded`), so the kinds after it are not
    reported. An N+1 comes first because it is usually why the budget was exceeded and its
    error names the line and the fix. ``can_raise=False`` (the end of a streamed response,
    whose status and headers are sent) turns "raise" into one ERROR record per finding.

    Each N+1 finding is also sent as the ``n_plus_one_detected`` signal (with ``request``,
    the middleware's, else None) before the reaction, unless the reaction is "ignore".
    """
    suffix = f" in {where}" if where else ""
    for name, label, error, warning in _FINDING_KINDS:
        reaction: Reaction = getattr(policy, name)
        findings: list[QueryFinding] = (
            [] if reaction == "ignore" else getattr(report, name)
        )
        if findings:
            if name == "n_plus_one":
                send_n_plus_one(findings, request)
            body = "\n".join(f.message for f in findings)
            _react(
                reaction,
                error(f"{len(findings)} {label} finding(s){suffix}:\n{body}", findings),
                warning,
                [(f.message, {"finding": f}, f) for f in findings],
                can_raise,
            )
    budget, count = policy.max_queries, report.count
    if policy.over_budget != "ignore" and budget is not None and count > budget:
        detail = "\n".join(
            f"    {n} x {display_sql(text, limit=160)}"
            for text, n in report.most_common(5)
        )
        message = (
            f"{count} queries{suffix}, over the budget of {budget}; "
            f"most frequent:\n{detail}"
        )
        _react(
            policy.over_budget,
            QueryBudgetExceeded(message, count=count, budget=budget),
            QueryBudgetWarning,
            [(message, {"query_count": count, "query_budget": budget}, None)],
            can_raise,
        )


# Policy and QueryReport name the kinds of finding alike; listed in precedence order.
_FINDING_KINDS: tuple[
    tuple[str, str, type[QueryProblemError], type[QueryProblemWarning]], ...
] = (
    ("n_plus_one", "N+1", NPlusOneError, NPlusOneWarning),
    ("duplicates", "duplicate query", DuplicateQueriesError, DuplicateQueriesWarning),
)


def _react(
    reaction: Reaction,
    error: QueryProblemError,
    warning: type[QueryProblemWarning],
    records: list[tuple[str, dict[str, Any], QueryFinding | None]],
    can_raise: bool,
) -> None:
    """One kind's reaction; ``records``: (message, log extra, finding) per finding.

    With ``"warn"`` the warning is the message. Its log record goes out only when a handler
    would receive it (on ``django_dbtuning`` or an ancestor, as configured by ``LOGGING``
    or pytest's capture): with none, Python hands the record to its last-resort handler,
    and a new project's runserver console would print every finding twice.
    """
    if reaction == "raise" and can_raise:
        raise error
    for message, extra, finding in records:
        if reaction == "raise":
            logger.error("%s\n    %s", message, NOT_RAISED, extra=extra)
            continue
        if reaction == "log" or logger.hasHandlers():
            logger.warning("%s", message, extra=extra)
        if reaction == "warn":
            _warn(warning(message), finding)


_warning_registry: dict[Any, Any] = {}


def _warn(warning: QueryProblemWarning, finding: QueryFinding | None) -> None:
    """Point the warning at the user's line when the finding has one."""
    if finding is not None and finding.filename and finding.lineno:
        warnings.warn_explicit(
            warning,
            type(warning),
            finding.filename,
            finding.lineno,
            registry=_warning_registry,
        )
    else:
        warnings.warn(warning, stacklevel=4)
