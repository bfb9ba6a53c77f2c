"""Reading ``EXPLAIN (FORMAT JSON)`` plans: mask them, walk them, summarise them, and find
which columns of a scanned relation a filter or join condition tests.

A generic plan of pg_stat_statements' normalised text shows parameters as ``$1``, but a
constant the normaliser kept, a partition bound or an inlined function body can still put a
literal into an expression, so every string of a plan that is not a name or a fixed word
(``Node Type``, ``Relation Name``...) is masked with the shared lexer before it is stored or
shown. Expressions are PostgreSQL's own deparsed text (``ruleutils.c``): with ``VERBOSE``
every column is ``refname.column``, each part quoted as ``quote_identifier`` quotes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from django_dbtuning.report.quoting import quote_ident
from django_dbtuning.sqllex import NAME_CHAR, NAME_START, masked_text

Plan = dict[str, Any]
Use = Literal["eq", "range", "other"]

# Keys whose values are names or PostgreSQL's fixed words, never expressions: kept as they
# are (a relation may be called ``a--b``, which the lexer would read as a comment). Every
# other string is masked, so a key a later PostgreSQL adds is masked until listed here.
RAW_KEYS = frozenset(
    {
        "Node Type",
        "Parent Relationship",
        "Relation Name",
        "Schema",
        "Alias",
        "Index Name",
        "Strategy",
        "Partial Mode",
        "Join Type",
        "Scan Direction",
        "Operation",
        "Sort Method",
        "CTE Name",
        "Function Name",
        "Subplan Name",
        "Command",
        "Tuplestore Name",
        "Table Function Name",
        "Conflict Resolution",
        "Conflict Arbiter Indexes",
        "Custom Plan Provider",
    }
)
INDEX_NODES = frozenset(
    {"Index Scan", "Index Only Scan", "Bitmap Index Scan", "Bitmap Heap Scan"}
)
SCAN_NODES = frozenset({"Seq Scan", *INDEX_NODES})

_QUOTED = r'"(?:[^"]|"")+"'
_NAME = rf"(?:{_QUOTED}|{NAME_START}{NAME_CHAR}*)"
# refname.column, not preceded by another name part (schema.table.column never appears in
# a VERBOSE plan, but a function call's "x.y(" is no column either).
_REFERENCE = re.compile(
    rf'(?<![\w$."])(?P<ref>{_NAME})\.(?P<column>{_NAME})(?![\w$"(])'
)
# After the column: closing parentheses and casts (``((t.name)::text = $1)``).
_CASTS = re.compile(
    r'(?:\s*\)|::(?:"(?:[^"]|"")+"|[\w$]+(?: [\w$]+)*)(?:\([^()]*\))?(?:\[\])?)*\s*'
)
_EQ = re.compile(r"=(?!>)|IN\b", re.I)
_RANGE = re.compile(r"(?:<=|>=|<(?![>@])|>(?!>))")
_BEFORE = re.compile(r"(=|<=|>=|<|>)\s*\(*\s*$")
_OR = re.compile(r"\bOR\b")


def mask_plan(value: Any, key: str = "") -> Any:
    """``value`` (a plan or any part of one) with every expression's literals masked."""
    if isinstance(value, dict):
        return {k: mask_plan(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_plan(v, key) for v in value]
    if isinstance(value, str) and key not in RAW_KEYS:
        return masked_text(value)
    return value


def nodes(plan: Plan, depth: int = 0) -> Iterator[tuple[Plan, int]]:
    """Every node of ``plan`` with its depth, parents before children."""
    yield plan, depth
    for child in plan.get("Plans") or []:
        if isinstance(child, dict):
            yield from nodes(child, depth + 1)


def unquote(name: str) -> str:
    """A name part as PostgreSQL reads it (quotes undone; ruleutils never leaves upper
    case unquoted)."""
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        return name[1:-1].replace('""', '"')
    return name


def _use(before: str, rest: str) -> Use:
    after = _CASTS.match(rest)
    tail = rest[after.end() :] if after else rest
    if _EQ.match(tail):
        return "eq"
    if _RANGE.match(tail):
        return "range"
    # The column on the right: "(o.customer >= r.lo)" tests r.lo by a range too.
    head = _BEFORE.search(before)
    if head is not None:
        return "eq" if head.group(1) == "=" else "range"
    return "other"


def column_uses(
    expression: str, refname: str, columns: set[str]
) -> list[tuple[str, Use]]:
    """The columns of the relation scanned as ``refname`` that ``expression`` tests, in
    order of appearance, each with how: ``eq`` (``=``, ``= ANY``), ``range`` (``<``...),
    or ``other`` (``LIKE``, ``IS NULL``, a function of the column)."""
    text = masked_text(expression)
    found: dict[str, Use] = {}
    for match in _REFERENCE.finditer(text):
        if unquote(match.group("ref")) != refname:
            continue
        column = unquote(match.group("column"))
        if column not in columns:
            continue
        use = _use(text[: match.start()], text[match.end() :])
        if column not in found or (found[column] == "other" and use != "other"):
            found[column] = use
    return list(found.items())


_ORDER = re.compile(r"(?: DESC| USING [^ ]+)?(?: NULLS (?:FIRST|LAST))?$")


def plain_column(key: str, refname: str, columns: set[str]) -> str | None:
    """The column a sort key is, when it is exactly ``refname.column`` (with its order):
    ``lower(t.name)`` or ``(t.a + t.b)`` is no column an index on it would serve."""
    text = _ORDER.sub("", key, count=1)
    match = _REFERENCE.fullmatch(text)
    if match is None or unquote(match.group("ref")) != refname:
        return None
    column = unquote(match.group("column"))
    return column if column in columns else None


def has_or(expression: str) -> bool:
    """Whether ``expression`` ORs conditions (outside quoted names)."""
    text = re.sub(_QUOTED, '""', masked_text(expression))
    return bool(_OR.search(text))


def relation(node: Plan) -> tuple[str, str] | None:
    """``(schema, table)`` a scan node reads (VERBOSE plans name the schema)."""
    name, schema = node.get("Relation Name"), node.get("Schema")
    if isinstance(name, str) and isinstance(schema, str):
        return schema, name
    return None


def uses_index(node: Plan) -> bool:
    """Whether any node of ``node``'s subtree reads through an index."""
    return any(n.get("Node Type") in INDEX_NODES for n, _ in nodes(node))


def label(node: Plan) -> str:
    """``Seq Scan on big b`` / ``Sort by big.pad`` / ``Hash Join``: one node in words."""
    kind = str(node.get("Node Type", "?"))
    if kind == "Aggregate" and node.get("Strategy") == "Hashed":
        kind = "HashAggregate"
    text = kind
    join = node.get("Join Type")
    if join and join != "Inner":
        text += f" ({join})"
    if node.get("Index Name"):
        text += f" using {quote_ident(str(node['Index Name']))}"
    if node.get("Relation Name"):
        name = str(node["Relation Name"])
        text += f" on {quote_ident(name)}"
        alias = node.get("Alias")
        if alias and alias != name:
            text += f" {quote_ident(str(alias))}"
    keys = node.get("Sort Key") or node.get("Group Key")
    if isinstance(keys, list) and keys:
        text += " by " + ", ".join(str(k) for k in keys[:3])
    rows = node.get("Plan Rows")
    if isinstance(rows, int | float):
        text += f" ({rows:,.0f} rows)"
    for key in ("Filter", "Index Cond", "Join Filter", "Hash Cond"):
        if node.get(key):
            text += f" [{key.lower()}: {node[key]}]"
            break
    return text


def summary(plan: Plan, *, limit: int = 8) -> str:
    """The plan on one line, nodes in order, children indented by ``→``."""
    parts = []
    for count, (node, depth) in enumerate(nodes(plan)):
        if count == limit:
            parts.append("…")
            break
        parts.append(("→ " * min(depth, 1)) + label(node))
    return " ".join(parts)
