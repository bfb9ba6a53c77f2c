from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from django_dbtuning.report.live import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus: the dbreport metrics and this process' pool gauges (works with and
    # without gunicorn's PROMETHEUS_MULTIPROC_DIR).
    path("metrics", metrics_view, name="metrics"),
    path("", include("shop.urls")),
]
