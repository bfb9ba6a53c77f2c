"""Properties of the judgement (eager_findings.judge) over arbitrary lookup trees and reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.queries.eager_findings import EagerState, Level, Load, Site, judge

NAMES = st.sampled_from(["a", "b", "c", "d"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("__".join)


@st.composite
def loads(draw):
    """One or two evaluations of one queryset: levels (with every parent), reads, counts."""
    paths = draw(st.sets(PATHS, min_size=1, max_size=6))
    for path in list(paths):  # a nested path always comes with its parents
        parts = path.split("__")
        paths.update("__".join(parts[:i]) for i in range(1, len(parts)))
    method = draw(st.sampled_from(["select_related", "prefetch_related"]))
    state = EagerState()
    site = Site(callsite="views.py:1")
    for _ in range(draw(st.integers(1, 2))):
        load = Load(method, "app.Root", site)
        load.everything = method == "select_related" and draw(st.booleans())
        leaves = [p for p in paths if not any(q.startswith(p + "__") for q in paths)]
        load.lookups = tuple((f'"{p}"', p) for p in sorted(leaves))
        for path in sorted(paths):
            level = Level(path, f"app.Model.{path.rsplit('__', 1)[-1]}", [])
            level.objects = draw(st.integers(0, 3))
            level.judged = draw(st.booleans()) or draw(st.booleans())
            if draw(st.booleans()):
                state.read.add(level)
            load.levels[path] = level
        state.loads.append(load)
    return state


def used_paths(state):
    used = set()
    for load in state.loads:
        for path, level in load.levels.items():
            if level in state.read or not level.judged:
                parts = path.split("__")
                used.update("__".join(parts[:i]) for i in range(1, len(parts) + 1))
    return used


@given(loads())
def test_a_finding_is_never_read_nor_below_an_unread_level(state):
    findings, _ = judge(state)
    used = used_paths(state)
    loaded = {
        path
        for load in state.loads
        for path, level in load.levels.items()
        if level.objects
    }
    reported = [f.lookup for f in findings]
    assert len(reported) == len(
        set(reported)
    )  # one finding per path, evaluations merged
    for finding in findings:
        path = finding.lookup
        assert path not in used  # nothing read on it or below it
        assert path in loaded  # it loaded something (an empty level proves nothing)
        parent = path.rpartition("__")[0]
        # An unread parent that loaded something is reported instead.
        assert not parent or parent in used or parent not in loaded
        assert finding.hint.startswith(
            ("drop ", "replace ", "select_related() follows")
        )
        if finding.hint.startswith("select_related() follows"):  # names only read paths
            named = finding.hint.rpartition("select_related(")[2].partition(")")[0]
            assert all(f'"{p}"' not in named for p in loaded - used)
    # Every loaded, unread level is covered: reported, or below a reported one.
    for path in loaded - used:
        parts = path.split("__")
        prefixes = {"__".join(parts[:i]) for i in range(1, len(parts) + 1)}
        assert prefixes & set(reported)
