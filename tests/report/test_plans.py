"""Reading EXPLAIN plans (report/plans.py): masking, and the columns a filter tests,
for any names PostgreSQL may print."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from django_dbtuning.report.plans import (
    column_uses,
    has_or,
    label,
    mask_plan,
    nodes,
    plain_column,
    summary,
)
from django_dbtuning.sqllex import masked_text

SECRET = "s3cret-Value"

# Any name a catalog may hold: quotes, spaces, dots, semicolons, unicode, "--" and "/*".
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=12,
)


def quote_identifier(name: str) -> str:
    """As ruleutils.c prints a name: bare when plain lower case and no reserved word
    (true, null: the words the lexer reads as values), else quoted."""
    plain = name.isascii() and name.replace("_", "a").isalnum() and name == name.lower()
    if plain and not name[0].isdigit() and masked_text(name) == name:
        return name
    return '"' + name.replace('"', '""') + '"'


@given(ref=names, column=names, other=names, op=st.sampled_from(["=", "<", ">=", "~~"]))
def test_the_tested_column_is_found_whatever_its_name(ref, column, other, op):
    expression = (
        f"(({quote_identifier(ref)}.{quote_identifier(column)})::text {op} $1) AND "
        f"({quote_identifier(ref)}.{quote_identifier(other)} = 'x''y'::text)"
    )
    found = dict(column_uses(expression, ref, {column, other}))
    expected = {"=": "eq", "<": "range", ">=": "range", "~~": "other"}[op]
    assert found[column] == (expected if column != other else found[column])
    assert found[other] == "eq" or other == column


@given(ref=names, column=names, stranger=names)
def test_columns_of_another_relation_are_not_its_own(ref, column, stranger):
    expression = f"({quote_identifier(stranger)}.{quote_identifier(column)} = $1)"
    found = column_uses(expression, ref, {column})
    assert found == ([] if stranger != ref else [(column, "eq")])


@given(ref=names, column=names)
def test_a_name_inside_a_literal_is_no_column(ref, column):
    literal = (f"{quote_identifier(ref)}.{quote_identifier(column)}").replace("'", "''")
    assert column_uses(f"(x.y = '{literal}'::text)", ref, {column}) == []


plan_values = st.recursive(
    st.one_of(
        st.sampled_from(
            [
                f"(t.a = '{SECRET}'::text)",
                f"'{SECRET}'",
                f"$${SECRET}$$",
                f"E'{SECRET}\\'''",
            ]
        ),
        st.integers(),
        st.booleans(),
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["Filter", "Output", "Sort Key", "Plans", "Hash Cond", "X New"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(plan=plan_values)
def test_no_literal_survives_masking(plan):
    masked = json.dumps(mask_plan(plan))
    assert SECRET not in masked


@given(name=names)
def test_names_are_kept_as_they_are(name):
    plan = {
        "Node Type": "Seq Scan",
        "Relation Name": name,
        "Alias": name,
        "Schema": name,
    }
    assert mask_plan(plan) == plan


def test_summary_walks_the_tree_in_order():
    plan = {
        "Node Type": "Limit",
        "Plan Rows": 10,
        "Plans": [
            {
                "Node Type": "Sort",
                "Sort Key": ["t.a"],
                "Plan Rows": 1000,
                "Plans": [
                    {
                        "Node Type": "Seq Scan",
                        "Relation Name": 'We"ird',
                        "Alias": "t",
                        "Plan Rows": 1000,
                        "Filter": "(t.b = $1)",
                    }
                ],
            }
        ],
    }
    assert [n["Node Type"] for n, _ in nodes(plan)] == ["Limit", "Sort", "Seq Scan"]
    assert summary(plan) == (
        'Limit (10 rows) → Sort by t.a (1,000 rows) → Seq Scan on "We""ird" t '
        "(1,000 rows) [filter: (t.b = $1)]"
    )
    assert label({"Node Type": "Aggregate", "Strategy": "Hashed"}) == "HashAggregate"


def test_or_is_read_outside_quoted_names():
    assert has_or("((t.a = $1) OR (t.b = $2))")
    assert not has_or('(t." OR " = $1)')


@given(
    ref=names,
    column=names,
    order=st.sampled_from(["", " DESC", " NULLS FIRST", " DESC NULLS LAST"]),
)
def test_a_sort_key_is_a_plain_column_or_nothing(ref, column, order):
    key = f"{quote_identifier(ref)}.{quote_identifier(column)}"
    assert plain_column(key + order, ref, {column}) == column
    assert plain_column(f"lower({key}){order}", ref, {column}) is None
    assert plain_column(f"({key} + 1){order}", ref, {column}) is None


def test_every_plan_code_and_threshold_is_documented():
    from pathlib import Path

    from django_dbtuning.report import DEFAULT_THRESHOLDS
    from django_dbtuning.report.plan_findings import CHECKS

    page = (Path(__file__).parents[2] / "docs" / "dbreport.md").read_text(
        encoding="utf-8"
    )
    for code in CHECKS:
        assert f"| `{code}` |" in page, code
    for name in DEFAULT_THRESHOLDS:
        if name.startswith("plan_"):
            assert f"`{name}`" in page, name
