from __future__ import annotations

from django.apps import AppConfig


class CopyAppConfig(AppConfig):
    name = "tests.copyapp"
    label = "copyapp"
    default_auto_field = "django.db.models.BigAutoField"
