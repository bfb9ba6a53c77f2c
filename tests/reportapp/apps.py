from __future__ import annotations

from django.apps import AppConfig


class ReportAppConfig(AppConfig):
    name = "tests.reportapp"
    label = "reportapp"
    default_auto_field = "django.db.models.BigAutoField"
