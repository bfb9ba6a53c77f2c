"""``using=`` naming an alias DATABASES does not have is an error, not a block that
silently records nothing (a query snapshot that always passes, a budget never checked)."""

from __future__ import annotations

import pytest

from django_dbtuning import query_budget, snapshot_queries, track_queries
from tests.testapp.models import Publisher

pytestmark = pytest.mark.django_db

UNKNOWN = "using names 'replcia', which is not in DATABASES ('default', 'other')"


@pytest.mark.parametrize("using", ["replcia", ["default", "replcia"], ("replcia",)])
def test_track_queries(using):
    with pytest.raises(ValueError) as info, track_queries(using=using):
        pass
    assert str(info.value) == UNKNOWN


def test_query_budget_block_and_decorator():
    with (
        pytest.raises(ValueError, match="'replcia', which is not in DATABASES"),
        query_budget(max_queries=0, using="replcia"),
    ):
        Publisher.objects.count()

    @query_budget(max_queries=0, using="replcia")  # decorating reads no settings
    def count():
        return Publisher.objects.count()

    with pytest.raises(ValueError, match="'replcia', which is not in DATABASES"):
        count()


def test_a_query_snapshot(tmp_path):
    path = tmp_path / "test_x.queries.json"
    with (
        pytest.raises(ValueError, match="'replcia', which is not in DATABASES"),
        snapshot_queries(path, "test_a", using="replcia"),
    ):
        Publisher.objects.count()
    assert not path.exists()


def test_known_aliases_still_work():
    with track_queries(using=["default"]) as report:
        Publisher.objects.count()
    assert report.count == 1
