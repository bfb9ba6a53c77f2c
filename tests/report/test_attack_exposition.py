"""Adversarial pass over the Prometheus output's per-table labels
(``REPORT_TOP_TABLE_METRICS``): whatever a table or alias is called, the exposition parses
back to the same names, one sample per table, and no name breaks out of its label."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_dbtuning.report import Report, as_prometheus
from django_dbtuning.report.findings import DatabaseReport

parser = pytest.importorskip("prometheus_client.parser")

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=15,
) | st.sampled_from(['"x"} 1\nevil_metric 2', "a\\b", "é\n#", 'q"q'])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(NAMES, min_size=1, max_size=4, unique=True), NAMES)
def test_table_labels_round_trip(dbtuning, tables, alias):
    dbtuning(REPORT_TOP_TABLE_METRICS=10)
    largest = [
        {"table": name, "total_bytes": 1000 + n} for n, name in enumerate(tables)
    ]
    report = Report(
        generated_at=datetime.now(UTC),
        sections=("tables",),
        databases={
            alias: DatabaseReport(
                alias=alias, sections={"tables": {"largest": largest}}
            )
        },
        findings=[],
    )
    text = as_prometheus(report)
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert "evil_metric" not in families
    samples = families["dbtuning_table_size_bytes"].samples
    assert {(s.labels["alias"], s.labels["table"], s.value) for s in samples} == {
        (alias, row["table"], float(row["total_bytes"])) for row in largest
    }
