"""Jinja2 templates: the template line of a compiled template's frame.

Jinja2 compiles a template to Python whose frames carry the template's file name but lines
of the generated code. Jinja2 keeps the way back itself: the frame's globals hold the
``Template`` (``__jinja_template__``), and ``Template.get_corresponding_lineno`` maps a
generated line to the template line (the same lookup Jinja2's own tracebacks use). Nothing
here reads generated code, and without Jinja2 (or for any other frame) it answers None.
"""

from __future__ import annotations

import contextlib
from types import FrameType
from typing import TYPE_CHECKING

from django_dbtuning.queries.callsite import HANDLER, USER, frame_category, location

if TYPE_CHECKING:
    from django_dbtuning.queries.attribution import Attribution


def template_location(frame: FrameType) -> tuple[str, int] | None:
    """``(template name, template line)`` if ``frame`` runs a compiled Jinja2 template."""
    template = frame.f_globals.get("__jinja_template__")
    if template is None:
        return None
    # A hint only: a Jinja2 change may lose the line, never the request.
    with contextlib.suppress(Exception):
        line = int(template.get_corresponding_lineno(frame.f_lineno))
        name = template.name or template.filename or "<template>"
        return str(name), line
    return None


def locate_template(
    frames: list[FrameType], user: FrameType | None, result: Attribution
) -> None:
    """Where a Jinja2 template is on the stack: its template line, and its renderer.

    When ``user`` runs the template, the finding reads ``books.jinja:4 (rendered from
    views.py:60)``, as for a Django template: the loop is the template's, and the view is
    where the context was built. When ``user`` is code the template called (a model
    property in ``{{ book.author_name }}``), it keeps that line and adds the template's:
    ``models.py:42 in author_name (called from books.jinja:4, rendered from views.py:60)``.
    """
    if user is None:
        return
    below = next((i for i, f in enumerate(frames) if f is user), len(frames))
    located = template_location(user)
    if located is None:
        for index in range(below + 1, len(frames)):
            f = frames[index]
            if frame_category(f.f_code) == HANDLER:
                return
            located = template_location(f)
            if located is not None:
                renderer = _renderer(frames[index + 1 :])
                result.template = "{}:{}".format(*located)
                result.template_call = True
                result.rendered_from = renderer[0] if renderer else None
                return
        return
    result.template = "{}:{}".format(*located)
    result.callsite = result.filename = result.lineno = result.function = None
    renderer = _renderer(frames[below + 1 :])
    if renderer is not None:
        result.callsite, result.filename, result.lineno, result.function = renderer


def _renderer(frames: list[FrameType]) -> tuple[str, str, int, str] | None:
    """``(callsite, path, line, function)`` of the first user frame that is no template."""
    for f in frames:
        kind = frame_category(f.f_code)
        if kind == HANDLER:
            return None
        if kind == USER and template_location(f) is None:
            path, line, function = location(f)
            return f"{path}:{line}", path, line, function
    return None
