"""n_plus_one_detected with async receivers, sent from an event loop's thread.

Django's ``send_robust`` awaits async receivers through ``async_to_sync``, which refuses to
run in a thread with a running loop: under ASGI (and ``async with query_budget()``) that
``RuntimeError`` used to cost the unit its reaction (no ``NPlusOneError``, no warning).
"""

# ruff: noqa: B018  (bare attribute reads are how N+1s happen)

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from django_dbtuning import NPlusOneError, n_plus_one_detected, query_budget
from tests.testapp.models import Author, Book, Publisher

pytestmark = pytest.mark.urls("tests.testapp.urls")

MIDDLEWARE = "django_dbtuning.middleware.QueryCountMiddleware"


@pytest.fixture
def seeded(transactional_db):
    publisher = Publisher.objects.create(name="P")
    for i in range(4):
        author = Author.objects.create(name=f"A{i}", publisher=publisher)
        Book.objects.create(title=f"B{i}", author=author)


@pytest.fixture
def calls():
    seen: list[tuple[str, object]] = []

    def sync_receiver(sender, finding, request, **kwargs):
        seen.append(("sync", finding.relation))

    async def async_receiver(sender, finding, request, **kwargs):
        await asyncio.sleep(0)
        seen.append(("async", finding.relation))

    async def broken(sender, **kwargs):
        raise RuntimeError("the async integration is down")

    for receiver in (sync_receiver, async_receiver, broken):
        n_plus_one_detected.connect(receiver)
    yield seen
    for receiver in (sync_receiver, async_receiver, broken):
        n_plus_one_detected.disconnect(receiver)


async def _settle():
    for _ in range(5):  # the async receivers' task, then its gather
        await asyncio.sleep(0)


def test_an_asgi_request_still_raises_with_an_async_receiver(
    seeded, calls, async_client, settings, dbtuning
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="raise")

    async def run():
        try:
            await async_client.get("/async/naive/")
        finally:
            await _settle()

    with pytest.raises(NPlusOneError):
        async_to_sync(run)()
    # The sync receiver before the reaction, as from a sync unit; the async one after.
    assert [kind for kind, _ in calls] == ["sync", "async"]


def test_an_asgi_request_logs_with_an_async_receiver(
    seeded, calls, async_client, settings, dbtuning, caplog
):
    settings.MIDDLEWARE = [MIDDLEWARE]
    dbtuning(ON_N_PLUS_ONE="log")

    async def run():
        response = await async_client.get("/async/naive/")
        await _settle()
        return response

    with caplog.at_level(logging.WARNING):
        response = async_to_sync(run)()
    assert response.status_code == 200
    assert [kind for kind, _ in calls] == ["sync", "async"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("N+1 query: ") for m in messages), messages
    assert not any("django-dbtuning failed" in m for m in messages), messages
    failures = [r for r in caplog.records if r.name == "django.dispatch"]
    assert len(failures) == 1
    assert "the async integration is down" in failures[0].getMessage()


def naive():
    for book in Book.objects.all():
        book.author.name


def test_async_with_query_budget_raises_with_an_async_receiver(seeded, calls):
    async def run():
        try:
            async with query_budget():
                await sync_to_async(naive)()
        finally:
            await _settle()

    with pytest.raises(NPlusOneError):
        async_to_sync(run)()
    assert [kind for kind, _ in calls] == ["sync", "async"]
