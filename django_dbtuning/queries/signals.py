"""``n_plus_one_detected``: one Django signal per N+1 finding, for integrations.

Sent by :func:`~django_dbtuning.queries.policy.enforce`, the one place every unit of work
(a request, a ``query_budget()`` block or decorated function, a test checked by the pytest
plugin) reacts to its findings, so a receiver sees the same findings as the warnings, log
records and exceptions. Receivers run through ``send_robust``: one that raises is logged by
Django (``django.dispatch``) and never breaks the request, the block or the other receivers.
"""

from __future__ import annotations

import asyncio
import logging
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
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    for finding in findings:
        sender, named = _model(finding.model), {"finding": finding, "request": request}
        if loop is None:
            n_plus_one_detected.send_robust(sender=sender, **named)
        else:
            _send_in_loop(loop, sender, named)


# Tasks of async receivers started in an event loop's thread, held until they finish
# (the loop keeps only weak references to tasks).
_tasks: set[asyncio.Task[None]] = set()
_dispatch_logger = logging.getLogger("django.dispatch")


def _send_in_loop(
    loop: asyncio.AbstractEventLoop, sender: Any, named: dict[str, Any]
) -> None:
    """``send_robust`` from an event loop's thread (an ASGI request, ``async with``).

    There, ``send_robust`` cannot await an async receiver (asgiref's ``async_to_sync``
    refuses to run in a loop's thread), and its ``RuntimeError`` would cost the unit its
    reaction. Sync receivers are called here, before the reaction, as ``send_robust``
    calls them; async ones run as a task on the running loop, as ``asend_robust`` would
    run them, so they finish after the reaction.
    """
    signal = n_plus_one_detected
    live = getattr(signal, "_live_receivers", None)  # Django 5.0+: (sync, async)
    if live is None:  # pragma: no cover - a later Django: its async receivers are lost
        try:
            signal.send_robust(sender=sender, **named)
        except RuntimeError as err:
            _log_failure(signal, err)
        return
    sync_receivers, async_receivers = live(sender)
    for receiver in sync_receivers:
        try:
            receiver(signal=signal, sender=sender, **named)
        except Exception as err:
            _log_failure(receiver, err)
    if async_receivers:
        task = loop.create_task(_await_receivers(async_receivers, sender, named))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


async def _await_receivers(
    receivers: list[Any], sender: Any, named: dict[str, Any]
) -> None:
    async def one(receiver: Any) -> None:
        try:
            await receiver(signal=n_plus_one_detected, sender=sender, **named)
        except Exception as err:
            _log_failure(receiver, err)

    await asyncio.gather(*(one(receiver) for receiver in receivers))


def _log_failure(receiver: Any, err: Exception) -> None:
    # The record send_robust makes for a receiver that raised.
    _dispatch_logger.error(
        "Error calling %s in Signal.send_robust() (%s)",
        getattr(receiver, "__qualname__", receiver),
        err,
        exc_info=err,
    )


def _model(label: str | None) -> type[Any] | None:
    if not label:
        return None
    from django.apps import apps

    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None
