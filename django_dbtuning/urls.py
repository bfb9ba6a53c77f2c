"""The staff dashboard's URLs: ``path("dbtuning/", include("django_dbtuning.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_dbtuning.dashboard import views

app_name = "django_dbtuning"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("indexes/", views.indexes, name="indexes"),
    path("tables/", views.tables, name="tables"),
    path("statements/", views.statements, name="statements"),
    path("history/", views.history, name="history"),
]
