"""The dashboard mounted without the admin (check dbtuning.W034), and under an own
namespace next to nothing else."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("ops/db/", include("django_dbtuning.urls", namespace="ops")),
]
