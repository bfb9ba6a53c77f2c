"""``n_plus_one_detected``: one Django signal per N+1 finding, for integrations.

Sent by :func:`~django_dbtuning.queries.policy.enforce`, the one place every unit of work
(a request, a ``query_budget()`` block or decorated function, a test checked by the pytest
plugin) reacts to its findings, so a receiver sees the same findings as the warnings, log
records and exceptions. Receivers run through ``send_robust``: one that raises is logged by
Django (``django.dispatch``) and never breaks the request, the block or the other receivers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.dispatch import Signal

from django_dbtuning.queries.findings import QueryFinding

n_plus_one_detected = Signal()
"""Sent once per N+1 finding, before the reaction (so before an ``NPlusOneError``).

Keyword arguments: ``sender``, the model class whose rows the finding is about
(``finding.model``; None when no installed model is known), ``finding``, the
:class:`~django_dbtuning.queries.QueryFinding`, and ``request``, the ``HttpRequest`` when a
request's unit found it (None in ``query_budget()`` blocks and in tests).
"""


def send_n_plus_one(findings: Iterable[QueryFinding], request: Any = None) -> None:
    """Send :data:`n_plus_one_detected` for each finding; receivers cannot raise here."""
    if not n_plus_one_detected.receivers:  # any sender: has_listeners() takes one
        return
    for finding in findings:
        n_plus_one_detected.send_robust(
            sender=_model(finding.model), finding=finding, request=request
        )


def _model(label: str | None) -> type[Any] | None:
    if not label:
        return None
    from django.apps import apps

    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None
