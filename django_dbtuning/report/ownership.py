"""Which installed apps are the project's own, and which it only installs.

The report treats tables of third-party and contrib apps differently: their hints cannot
ask you to edit a model you do not own, and the text output folds their findings into one
line per code (:mod:`.noise`). The rule, in order:

1. an app whose name starts with ``django.`` (``django.contrib.auth``…) is Django's,
   and ``django_dbtuning`` itself (its snapshot table) is this package's;
2. an app under a ``site-packages`` or ``dist-packages`` directory is an installed
   package's, unless it is below ``settings.BASE_DIR`` (``startproject`` sets it) with no
   such directory between the two: a project installed with ``pip install .`` (a Docker
   image) still owns the apps below its ``BASE_DIR``, while a virtualenv inside the project
   (``BASE_DIR/.venv/lib/…/site-packages``) holds other people's code;
3. every other app is the project's own (apps next to ``manage.py``, a ``src/`` layout,
   sibling packages of a monorepo, editable installs).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

_INSTALLED = frozenset({"site-packages", "dist-packages"})


def _installed(parts: tuple[str, ...]) -> bool:
    return any(part in _INSTALLED for part in parts)


def base_dir() -> PurePath | None:
    """``settings.BASE_DIR`` as a path, or None when unset or not a path."""
    from django.conf import settings

    value = getattr(settings, "BASE_DIR", None)
    if not isinstance(value, str | PurePath) or not str(value):
        return None
    return PurePath(value)


def third_party_app(app_config: Any) -> bool:
    """Whether ``app_config`` belongs to Django or an installed package (module doc)."""
    name = str(getattr(app_config, "name", ""))
    if name == "django" or name.startswith("django."):
        return True
    if name == "django_dbtuning":
        # This app's own table (dbreport --save's snapshots) is the package's, however
        # it is installed (a checkout, an editable install): not the project's to change.
        return True
    path = PurePath(str(getattr(app_config, "path", "") or ""))
    if not _installed(path.parts):
        return False
    base = base_dir()
    if base is None:
        return True
    try:
        inside = path.relative_to(base)
    except ValueError:
        return True
    return _installed(inside.parts)
