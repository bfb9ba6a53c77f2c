"""Where in the user's code a query came from: frame categories and call-site keys.

Per query, the recorder needs only a *call-site key*: the code object and line of the first
frame of user code. :func:`site_key` finds it with one C-level ``sys._getframe(depth)`` at a
depth learned per SQL string, checked against the frame categories (a dict lookup per code
object); only a miss walks the stack. Library frames (Django, site-packages, the standard
library) are skipped; a template node, an asgiref bridge and Django's request handler end
the search. Under ``sync_to_async`` the user's code is a coroutine suspended in the event
loop, read through the task (:func:`coroutine_user_frame`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import sysconfig
import time
from collections.abc import Hashable
from types import CodeType, FrameType
from typing import Any

from django_dbtuning.queries.fingerprint import SqlInfo

# Frame categories.
LIBRARY = 0  # framework, site-packages, stdlib: skipped
USER = 1
TEMPLATE = 2  # django.template.base.Node.render_annotated: the node being rendered
HANDLER = 3  # django.core.handlers: nothing above it triggered the query
CURSOR = 4  # CursorWrapper._execute_with_wrappers: everything below it is wrappers
ORM = 5  # django.db and this package: never a call site, even as a fallback
HOP = 6  # asgiref's sync/async bridges: the caller is a coroutine, not this thread

# Django functions whose frames carry hints: (module, class or "", function, label).
_QUERYSET_METHODS = (
    "get",
    "count",
    "exists",
    "aggregate",
    "first",
    "last",
    "latest",
    "earliest",
    "__iter__",
    "__len__",
    "__bool__",
    "__getitem__",
    "iterator",
    "in_bulk",
    "create",
    "update",
    "delete",
    "get_or_create",
    "update_or_create",
    "contains",
)
_RELATED = "django.db.models.fields.related_descriptors"
_LABELLED_FUNCTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("django.template.base", "Node", "render_annotated", "template"),
    ("django.db.backends.utils", "CursorWrapper", "_execute_with_wrappers", "cursor"),
    (_RELATED, "ForwardManyToOneDescriptor", "__get__", "forward"),
    (_RELATED, "ForwardManyToOneDescriptor", "get_object", "forward"),
    (_RELATED, "ForwardOneToOneDescriptor", "get_object", "forward"),
    (_RELATED, "ReverseOneToOneDescriptor", "__get__", "reverse_one"),
    ("django.db.models.query_utils", "DeferredAttribute", "__get__", "deferred"),
    # Django < 6.1: the field is its own descriptor; 6.1 split the descriptor out for
    # fetch modes. Each version resolves one of the two; the other is skipped.
    ("django.contrib.contenttypes.fields", "GenericForeignKey", "__get__", "gfk"),
    (
        "django.contrib.contenttypes.fields",
        "GenericForeignKeyDescriptor",
        "__get__",
        "gfk",
    ),
    ("django.db.models.query", "", "prefetch_one_level", "prefetch"),
    ("django.db.models.base", "Model", "save", "save"),
    ("django.db.models.base", "Model", "delete", "delete"),
    # Every proxied manager method (count, filter, get...) shares one code object.
    ("django.db.models.manager", "Manager", "count", "manager"),
    *(
        ("django.db.models.query", "QuerySet", name, "qs:" + name)
        for name in _QUERYSET_METHODS
    ),
)

# Keyed by id(code): hashing a code object hashes its bytecode and constants (hundreds of
# ns); the entry keeps the code object alive and is checked by identity, so ids are safe.
_category: dict[int, tuple[CodeType, int]] = {}
# Keyed by id(code) (see _category); these functions live as long as Django does.
_labels: dict[int, str] = {}
_labelled_codes: list[CodeType] = []
_labels_loaded = False


def _load_labels() -> None:
    global _labels_loaded
    _labels_loaded = True
    for module_name, owner, name, label in _LABELLED_FUNCTIONS:
        # A renamed hook loses one hint, nothing else.
        with contextlib.suppress(Exception):
            module = __import__(module_name, fromlist=["_"])
            code = getattr(getattr(module, owner) if owner else module, name).__code__
            _labels[id(code)] = label
            _labelled_codes.append(code)


def frame_label(code: CodeType) -> str | None:
    """What a Django function's frame tells (``"forward"``, ``"qs:count"``...), or None."""
    if not _labels_loaded:
        _load_labels()
    return _labels.get(id(code))


@functools.cache
def _roots() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Path prefixes of the ORM (and this package), Django's handlers, and libraries."""
    import django

    import django_dbtuning

    django_dir = os.path.dirname(django.__file__) + os.sep
    orm = (
        os.path.join(django_dir, "db") + os.sep,
        os.path.dirname(django_dbtuning.__file__) + os.sep,
    )
    handlers = (os.path.join(django_dir, "core", "handlers") + os.sep,)
    library = {django_dir}
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            library.add(os.path.realpath(paths[key]) + os.sep)
            library.add(paths[key] + os.sep)
    for entry in sys.path:
        if entry and ("site-packages" in entry or "dist-packages" in entry):
            library.add(entry.rstrip(os.sep) + os.sep)
    return orm, handlers, tuple(sorted(library, key=len, reverse=True))


def _classify(code: CodeType) -> int:
    orm, handlers, library = _roots()
    label = frame_label(code)
    filename = code.co_filename
    if label == "template":
        category = TEMPLATE
    elif label == "cursor":
        category = CURSOR
    elif filename.startswith(orm):
        category = ORM
    elif filename.startswith(handlers):
        category = HANDLER
    elif filename.endswith(os.path.join("asgiref", "sync.py")):
        category = HOP
    elif filename.startswith((*library, "<frozen")):
        category = LIBRARY
    else:
        category = USER
    if len(_category) > 50_000:
        _category.clear()
    _category[id(code)] = (code, category)
    return category


def frame_category(code: CodeType) -> int:
    """The category of a code object (cached): LIBRARY, USER, TEMPLATE, HANDLER..."""
    found = _category.get(id(code))
    return found[1] if found is not None and found[0] is code else _classify(code)


# --- call-site keys (per query) ----------------------------------------------------------


def site_key(frame: FrameType, info: SqlInfo, task: Any) -> Hashable:
    """A hashable key for the place in user code that issued this query.

    ``frame`` is the recorder's own frame; ``info.site_depth`` (learned per SQL string) says
    how far above it the anchor frame usually sits.

    The learned depth is a shortcut, never a source of truth. The walk also learns the ORM
    entry: the outermost frame of the ORM's own run of frames above the cursor, and its
    depth (``site_entry``). The shortcut is taken only where that frame runs the same ORM
    function at the same depth and every frame between it and the anchor is library code
    (none here when user code calls the ORM directly; a template engine's few frames below
    a template node), read from the category cache. A depth learned on another path (a
    library helper, a template, a middleware above a shallower caller) fails that test and
    the stack is walked, so a site never depends on what ran before in the process. What
    the shortcut trusts is that Django's ORM, between its entry and the cursor, does not
    call user code that runs the same SQL string.
    """
    depth = info.site_depth
    if depth > 1:
        below = info.site_below
        if below is not None:
            # User code called the ORM entry directly: the anchor is the entry's caller.
            try:
                back = sys._getframe(depth)
            except ValueError:
                pass
            else:
                anchor = back.f_back
                if anchor is not None and back.f_code is below:
                    code = anchor.f_code
                    found = _category.get(id(code))
                    if found is not None and found[0] is code and found[1] == USER:
                        line = _lines.get((id(code), anchor.f_lasti))
                        return line if line is not None else _line_key(anchor)
        elif info.site_entry is not None:
            key = _shortcut(depth, info.site_entry)
            if key is not None:
                return key
    elif depth == -1 and task is not None:
        key = _coroutine_key(task)
        if key is not None:
            return key
    key, depth, below, entry = _walk_for_site(frame, task)
    info.site_depth = depth
    info.site_below = below
    info.site_entry = entry
    return key


def _shortcut(depth: int, entry: tuple[int, CodeType]) -> Hashable | None:
    """The site at the learned depth, if the stack proves it (see site_key), else None."""
    entry_depth, entry_code = entry
    try:
        f: FrameType | None = sys._getframe(entry_depth + 2)  # +2: this and site_key
    except ValueError:
        return None
    if f is None or f.f_code is not entry_code:
        return None
    category, library, orm = _category.get, LIBRARY, ORM
    f = f.f_back
    between = depth - entry_depth - 1  # the library frames between
    while between and f is not None:
        code = f.f_code
        found = category(id(code))
        if found is None or found[0] is not code:
            return None
        if found[1] != library and found[1] != orm:
            return None
        f = f.f_back
        between -= 1
    if f is None:
        return None
    code = f.f_code
    found = category(id(code))
    if found is None or found[0] is not code:
        return None
    if found[1] == USER:
        line = _lines.get((id(code), f.f_lasti))
        return line if line is not None else _line_key(f)
    if found[1] == TEMPLATE:
        return _template_key(f)
    return None


def _template_key(frame: FrameType) -> Hashable:
    try:
        return ("template", id(frame.f_locals.get("self")))
    except Exception:
        return ("template", 0)


def _walk_for_site(
    frame: FrameType, task: Any
) -> tuple[Hashable, int, CodeType | None, tuple[int, CodeType] | None]:
    """The site key, its depth, the ORM code right below it (None: not an ORM frame) and
    the ORM entry (depth and code of the outermost frame of the ORM run above the cursor).

    Depths are counted from the caller of site_key(), which is how site_key() uses them.
    """
    f: FrameType | None = frame
    depth = 0
    passed_cursor = False
    fallback: tuple[FrameType, int] | None = None
    below: CodeType | None = None  # the last frame seen, when it is the ORM's
    entry: tuple[int, CodeType] | None = None
    in_orm = True  # still in the ORM's own frames above the cursor
    category = _category.get
    while f is not None:
        code = f.f_code
        found = category(id(code))  # frame_category(), inlined: this loop is per query
        kind = found[1] if found is not None and found[0] is code else _classify(code)
        if kind == CURSOR:
            passed_cursor = True
        elif passed_cursor:
            if kind == USER:
                return _line_key(f), depth, below, entry
            if kind == TEMPLATE:
                return _template_key(f), depth, None, entry
            if kind == HANDLER or (kind == HOP and task is not None):
                break
            if kind == LIBRARY and fallback is None:
                fallback = (f, depth)
            if in_orm and kind == ORM:
                entry = (depth, code)
            else:
                in_orm = False
        below = code if kind == ORM else None
        f = f.f_back
        depth += 1
    if not passed_cursor:
        # No CursorWrapper on the stack (a Django refactor, or a raw psycopg cursor): look at
        # every frame instead of losing the site.
        f, depth, below = frame, 0, None
        while f is not None:
            kind = frame_category(f.f_code)
            if kind == USER:
                entry = (depth - 1, below) if below is not None else None
                return _line_key(f), depth, below, entry
            below = f.f_code if kind == ORM else None
            f, depth = f.f_back, depth + 1
    if task is not None:
        key = _coroutine_key(task)
        if key is not None:
            return key, -1, None, None
    if fallback is not None:
        return _line_key(fallback[0]), 0, None, None
    return None, 0, None, None


_lines: dict[tuple[int, int], tuple[int, int]] = {}
_line_codes: dict[int, CodeType] = {}


def _line_key(frame: FrameType) -> tuple[int, int]:
    # The instruction offset is cheap but not stable: 3.11's specialised calls may stop
    # at PRECALL or at CALL. (code, line) is; memoise the offset -> line mapping.
    code = frame.f_code
    offset = (id(code), frame.f_lasti)
    key = _lines.get(offset)
    if key is None or _line_codes.get(offset[0]) is not code:
        if len(_lines) > 100_000:
            _lines.clear()
            _line_codes.clear()
        _line_codes[offset[0]] = code  # keeps the id from being reused
        key = _lines[offset] = (offset[0], frame.f_lineno)
    return key


# --- coroutines (sync_to_async) ----------------------------------------------------------


def current_task() -> Any:
    """The running asyncio task, if any (recorded when a unit of work starts)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def coroutine_user_frame(task: Any) -> FrameType | None:
    """The innermost frame of user code among the coroutines ``task`` is suspended in.

    In a ``sync_to_async`` worker thread the awaiting coroutine is not on the thread's
    stack; it is suspended in the event loop, so its frame and line are stable while the
    query runs.
    """
    try:
        coro = task.get_coro()
    except Exception:
        return None
    _wait_until_suspended(coro)
    found = None
    for _ in range(200):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            frame = getattr(coro, "ag_frame", None)
        if frame is not None and frame_category(frame.f_code) == USER:
            found = frame
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return found


def _wait_until_suspended(coro: Any) -> None:
    # sync_to_async hands the query to this thread before the event loop has suspended the
    # awaiting coroutines; until it has, their cr_await links are not set yet and the chain
    # would end at an outer frame. The loop suspends them within microseconds: yield the GIL
    # until it has (bounded). Not in the loop's own thread, where the task is always running.
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass
    for _ in range(2000):
        if not getattr(coro, "cr_running", False):
            return
        time.sleep(0)


def _coroutine_key(task: Any) -> Hashable | None:
    frame = coroutine_user_frame(task)
    return _line_key(frame) if frame is not None else None


# --- what a reader sees ------------------------------------------------------------------

_COMPREHENSIONS = frozenset({"<listcomp>", "<genexpr>", "<dictcomp>", "<setcomp>"})


@functools.lru_cache(maxsize=10_000)
def _display_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith("..") else relative


def location(frame: FrameType) -> tuple[str, int, str]:
    """``(path, line, function)`` of a frame, the path relative to the working directory."""
    function = frame.f_code.co_name
    outer = frame.f_back
    # Before 3.12 comprehensions are functions of their own; name the one around them.
    while function in _COMPREHENSIONS and outer is not None:
        function, outer = outer.f_code.co_name, outer.f_back
    return _display_path(frame.f_code.co_filename), frame.f_lineno, function
