"""The dashboard mounted the way its docs say, next to the admin (its login page)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("dbtuning/", include("django_dbtuning.urls")),
]
