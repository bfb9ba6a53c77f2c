from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from django_dbtuning.report.live import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # The staff dashboard (django_dbtuning.view_report): make serve prints its login.
    path("dbtuning/", include("django_dbtuning.urls")),
    # Prometheus: the dbreport metrics and this process' pool gauges (works with and
    # without gunicorn's PROMETHEUS_MULTIPROC_DIR).
    path("metrics", metrics_view, name="metrics"),
    path("", include("shop.urls")),
]

if "debug_toolbar" in settings.INSTALLED_APPS:  # DEBUG runs (config/settings.py)
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += debug_toolbar_urls()
