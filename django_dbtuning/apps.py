from __future__ import annotations

from django.apps import AppConfig


class DbTuningConfig(AppConfig):
    name = "django_dbtuning"
    verbose_name = "Database tuning"
    default = True

    def ready(self) -> None:
        # Importing registers the system checks through @register.
        from django_dbtuning import checks  # noqa: F401
        from django_dbtuning.pool import checks as pool_checks  # noqa: F401
        from django_dbtuning.queries import checks as query_checks  # noqa: F401
        from django_dbtuning.queries.recorder import install
        from django_dbtuning.report import checks as report_checks  # noqa: F401

        # The recorder is a no-op outside a unit of work; installing it now means every
        # connection, in every thread, has it before the first tracked query.
        install()

        from django_dbtuning.report.live import register_collectors

        # dbreport's live metrics on prometheus_client's default registry (served at
        # /metrics by report.live.metrics_view); registering runs no query.
        register_collectors()
