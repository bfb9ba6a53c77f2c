"""Folding what varies between executions of one statement: lists, rows, CASE ladders.

Every function here reads masked text (:func:`django_dbtuning.sqllex.mask`): literals are
``?``, comments gone, whitespace single spaces, and quoted identifiers that could hold a
bracket are sentinels, so every bracket left is SQL punctuation and can be counted.
"""

from __future__ import annotations

import re

from django_dbtuning.sqllex import NAME_CHAR, NAME_START, token_before

# Every pattern below runs over masked text, where whitespace is single spaces and a name is
# NAME_START NAME_CHAR* (NBSP and every other non-ASCII character are name characters, as in
# PostgreSQL); none uses \s, \w or \b. Repetitions are possessive, so each pattern is
# linear in the text: a failed attempt costs at most the distance to the next bracket.
NAME_END = rf"(?!{NAME_CHAR})"
NAME = rf'(?:{NAME_START}{NAME_CHAR}*+|"(?:[^"]++|"")*+")'
_S = " ?"
# ::text, ::varchar(?)[], ::numeric(?, ?), ::timestamp with time zone, ::"char",
# ::pg_catalog.int4, ::geometry(Point, ?) (a modifier may be a name: PostGIS's types)
_MODIFIER = rf"(?:\?|{NAME})"
_TYPE = (
    rf"{NAME}(?:\.{NAME})?(?: (?i:PRECISION|VARYING|WITH|WITHOUT|TIME|ZONE){NAME_END})*+"
    rf"(?:{_S}\({_S}{_MODIFIER}(?:{_S},{_S}{_MODIFIER})*+{_S}\))?(?:{_S}\[\??\])*+"
)
_SCALAR = r"(?:\?|%s|%\([^()]*+\)s|\$[0-9]++)"
# A value: a literal, a placeholder, DEFAULT, or a list already folded ((...), ARRAY[...]).
_ELEMENT = (
    rf"(?:{_SCALAR}|(?i:DEFAULT){NAME_END}|\(\.\.\.\)|\[\.\.\.\]|(?i:ARRAY){_S}\[\.\.\.\]"
    rf"|(?i:ROW){_S}\(\.\.\.\)|\({_S}{_SCALAR}(?:{_S}::{_S}{_TYPE})*+{_S}\))"
    rf"(?:{_S}::{_S}{_TYPE})*+"
)
_ITEMS = rf"{_ELEMENT}(?:{_S},{_S}{_ELEMENT})*+"
# A bracketed list of values; the text before it (token_before) says what the list is.
_LIST = re.compile(rf"(?P<open>[(\[]){_S}(?P<items>{_ITEMS})?{_S}(?P<close>[)\]])")
_TYPMOD = re.compile(r"\([^()]*+\)")
# A row or a THEN value that is values only (a literal, a placeholder, a cast, a folded list).
_PLAIN_ROW = re.compile(rf"{_S}(?:\.\.\.|{_ITEMS}){_S}")
_PLAIN_VALUE = re.compile(_ELEMENT)
_VALUES = re.compile(rf"(?<!{NAME_CHAR})(?<!\")(?i:VALUES){_S}(?=\()")
_NEXT_ROW = re.compile(rf"{_S},{_S}(?=\()")
_WHEN = re.compile(r" (?i:WHEN) (?=\()")
_THEN = re.compile(r" (?i:THEN) ")
# Where a THEN value may end: the next branch, ELSE or END; brackets are skipped whole.
_THEN_STOP = re.compile(rf"[()]| (?i:WHEN|ELSE|END){NAME_END}")
# Where a parenthesised list of two or more values is a row constructor, (a, b) = (1, 2);
# after a name it is a function call's arguments or a type's modifiers, never folded.
_ROW_AFTER = frozenset(
    [
        "",
        "AND",
        "BETWEEN",
        "ELSE",
        "HAVING",
        "NOT",
        "ON",
        "OR",
        "RETURNING",
        "SELECT",
        "THEN",
        "WHEN",
        "WHERE",
        *"~!@#^&|`?+-*/%<>=([,",
    ]
)


def fold_lists(text: str) -> tuple[str, bool, bool]:
    """Fold lists of values: ``IN (...)``, ``ARRAY[...]``, ``ROW(...)``, ``(...)`` rows.

    Innermost lists first: a folded list is a value of the list around it, so row-value
    ``IN ((1, 2), (3, 4))`` and ``ARRAY[ARRAY[1], ARRAY[2]]`` fold on a later round. Four
    rounds cover any statement an application writes; deeper nesting keeps its inner lists.
    Returns the text, whether an ``IN`` list held two or more values, and whether a list
    that may sit inside another (a row, an array) was folded.
    """
    batch = folded = False
    nested = True

    def fold(match: re.Match[str]) -> str:
        nonlocal batch, nested
        opened, items = match.group("open"), match.group("items")
        if (opened == "(") != (match.group("close") == ")"):
            return match.group()
        before = token_before(match.string, match.start())
        if opened == "[":
            if before == "ARRAY" or (items and before in ("[", ",")):
                nested = True
                return "[...]"
            return match.group()  # a subscript, a[1]
        if before == "ROW":
            nested = True
            return "(...)"
        if not items or before == "VALUES":  # VALUES rows: _VALUES folds the whole list
            return match.group()
        if before == "IN":
            batch = batch or _more(items)
            return "(...)"
        if before in _ROW_AFTER and _more(items):
            nested = True
            return "(...)"
        return match.group()

    rounds = 0
    while nested and rounds < 4 and ("(" in text or "[" in text):
        nested = False
        rounds += 1
        text = _LIST.sub(fold, text)
        folded = folded or nested
    return text, batch, folded


def _more(items: str) -> bool:
    """Whether a list's items are two or more (a type modifier's comma does not count)."""
    if "(" in items:
        items = _TYPMOD.sub("", items)
    return "," in items


def _close(text: str, start: int) -> int:
    """The index after the ``)`` matching the ``(`` at ``start``; -1 when none does.

    Counting is exact on masked text: the lexer has turned every literal and comment into
    ``?`` or a space and every quoted identifier that could hold one into a sentinel, so a
    bracket left in the text is SQL punctuation.
    """
    depth, pos = 1, start + 1
    while depth:
        close = text.find(")", pos)
        if close < 0:
            return -1
        depth += text.count("(", pos, close) - 1
        pos = close + 1
    return pos


def fold_values(text: str) -> tuple[str, bool]:
    """Each ``VALUES`` list as its distinct rows, a row of values only as ``(...)``.

    A row is cut at its own closing bracket, so it may hold anything a column needs: casts
    with modifiers (``%s::varchar(20)[]``, ``%s::geometry(Point, 4326)``), function wrappers
    (``ST_GeomFromEWKB(%s)``), sub-selects. N copies of one row template, which is what
    ``bulk_create`` sends, are then one shape whatever N is. Returns the text and whether a
    list held two or more rows. Unbalanced text (cut at ``?…``) stops the folding there.
    """
    parts: list[str] = []
    pos = 0
    batch = False
    find = text.upper().find
    at = find("VALUES")
    while at >= 0:
        match = _VALUES.match(text, at)
        at = find("VALUES", at + 6)
        if match is None or match.start() < pos:
            continue  # a name (my_values), or inside a row already folded
        start = end = match.end()
        rows: dict[str, None] = {}  # insertion-ordered set
        count = done = 0
        while (close := _close(text, end)) > 0:
            row = text[end:close]
            rows[row[1:-1]] = None
            count += 1
            more = _NEXT_ROW.match(text, close)
            if more is not None:
                # bulk_create's rows are one template: skip its copies at C speed.
                again = text[close : more.end()] + row
                while text.startswith(again, close):
                    close += len(again)
                    count += 1
                more = _NEXT_ROW.match(text, close)
            done = close
            if more is None:
                break
            end = more.end()
        if not count:
            break
        keys = dict.fromkeys("..." if _PLAIN_ROW.fullmatch(r) else r for r in rows)
        parts += (text[pos:start], "(" + "), (".join(keys) + ")")
        pos = done
        batch = batch or count > 1
        if close < 0:
            break
    if not parts:
        return text, False
    parts.append(text[pos:])
    return "".join(parts), batch


def _then_end(text: str, pos: int) -> int:
    """Where the THEN value starting at ``pos`` ends (at WHEN, ELSE, END or a stray ``)``)."""
    while True:
        stop = _THEN_STOP.search(text, pos)
        if stop is None:
            return len(text)
        if stop.group() != "(":
            return stop.start()
        pos = _close(text, stop.start())
        if pos < 0:
            return len(text)


def fold_ladders(text: str) -> tuple[str, bool]:
    """``CASE WHEN (…) THEN v WHEN (…) THEN v …`` (``bulk_update``) as one branch per value form.

    A value of values only is ``...``; any other (a cast of an array, a function wrapper)
    is kept once. The conditions are read bracket by bracket, so a composite key's nested
    brackets fold too. Returns the text and whether a ladder had two or more branches.
    """
    parts: list[str] = []
    pos = 0
    batch = False
    for match in _WHEN.finditer(text):
        start = end = match.start()
        if start < pos:
            continue
        values: dict[str, None] = {}
        count = 0
        while (branch := _WHEN.match(text, end)) is not None:
            condition_end = _close(text, branch.end())
            then = _THEN.match(text, condition_end) if condition_end > 0 else None
            if then is None:
                break
            stop = _then_end(text, then.end())
            value = text[then.end() : stop]
            if not value or value.upper().endswith("CASE"):
                break  # a nested CASE: its own ladder folds on its own
            values[value] = None
            count += 1
            # bulk_update's branches are one template: skip its copies at C speed.
            again = text[branch.start() : stop]
            while text.startswith(again, stop):
                stop += len(again)
                count += 1
            end = stop
        if not count:
            if condition_end < 0:
                break  # unbalanced from here on (text cut at "?…")
            continue
        forms = dict.fromkeys("..." if _PLAIN_VALUE.fullmatch(v) else v for v in values)
        parts.append(text[pos:start])
        parts += (f" WHEN ... THEN {form}" for form in forms)
        pos = end
        batch = batch or count > 1
    if not parts:
        return text, False
    parts.append(text[pos:])
    return "".join(parts), batch
