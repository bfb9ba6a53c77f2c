from __future__ import annotations

from django.apps import AppConfig


class DbTuningConfig(AppConfig):
    name = "django_dbtuning"
    verbose_name = "Database tuning"
    default = True

    def ready(self) -> None:
        # Importing registers the system checks through @register.
        from django_dbtuning import checks  # noqa: F401
