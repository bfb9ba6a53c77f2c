"""The SVG chart helper: well-formed SVG for any numbers and any labels, one point per
value, every label escaped."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.dashboard.charts import Series, line_chart

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 1, 1, tzinfo=UTC)

values = st.one_of(
    st.none(), st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
)
labels = st.text(min_size=0, max_size=30)


@st.composite
def charts(draw):
    points = draw(st.integers(min_value=1, max_value=8))
    series = draw(
        st.lists(
            st.builds(
                Series, labels, st.lists(values, min_size=points, max_size=points)
            ),
            min_size=1,
            max_size=4,
        )
    )
    times = [START + timedelta(hours=h) for h in range(points)]
    return draw(labels), times, series


@given(charts())
def test_any_chart_is_well_formed_with_one_point_per_value(chart):
    title, times, series = chart
    html = str(line_chart(title, times, series))
    expected = sum(v is not None for s in series for v in s.values)
    if expected == 0:
        assert "no data yet" in html
        return
    figure = ET.fromstring(html)  # raises on any unescaped label
    circles = list(figure.iter(f"{SVG}circle"))
    assert len(circles) == expected
    for circle in circles:
        assert math.isfinite(float(circle.get("cx"))), html
        assert math.isfinite(float(circle.get("cy"))), html
    if title.isprintable():
        assert (figure.find("figcaption/h3").text or "") == title


def test_hostile_labels_stay_text():
    chart = str(
        line_chart(
            "<script>t</script>",
            [START, START + timedelta(days=1)],
            [Series('<img src=x onerror="alert(1)">', [1.0, 2.0])],
        )
    )
    assert "<script>" not in chart
    assert "<img" not in chart
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in chart


def test_one_snapshot_or_equal_values_draw_in_the_middle():
    chart = str(line_chart("one", [START], [Series("a", [5.0])]))
    assert ET.fromstring(chart).find(f".//{SVG}circle") is not None
