"""Who may see the dashboard, and how every response goes out.

Anonymous users go to the admin's login page; a signed-in user needs ``is_staff`` and the
``django_dbtuning.view_report`` permission (a superuser has every permission), else 403.
Only GET and HEAD are served (405 otherwise): nothing on these pages changes anything.
Responses are ``Cache-Control: no-store``: they describe production data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied
from django.core.handlers.exception import response_for_exception
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

PERMISSION = "django_dbtuning.view_report"

View = Callable[..., HttpResponse]
"""A view: the request, then the URL's captured values."""


def login_url() -> str:
    """The admin's login page when the admin is mounted, else ``settings.LOGIN_URL``."""
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(settings.LOGIN_URL)


def may_view(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def staff_view(view: View) -> View:
    """GET/HEAD only, never cached, staff with ``view_report`` only."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            # Imported here: auth's models would fail the import of the URLconf in a
            # project without django.contrib.auth, which check dbtuning.W034 reports.
            from django.contrib.auth.views import redirect_to_login

            return redirect_to_login(request.get_full_path(), login_url())
        if not may_view(request):
            # Returned, not raised: never_cache marks only responses that come back,
            # and the project's handler403 still renders it.
            denied = PermissionDenied("needs is_staff and django_dbtuning.view_report")
            return response_for_exception(request, denied)
        try:
            return view(request, *args, **kwargs)
        except (BadRequest, Http404) as exc:  # a wrong ?database=: still no-store
            return response_for_exception(request, exc)

    return never_cache(require_safe(guarded))
