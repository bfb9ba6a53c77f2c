"""The staff dashboard's URLs: ``path("dbtuning/", include("django_dbtuning.urls"))``."""

from __future__ import annotations

from django.urls import path

from django_dbtuning.dashboard import statement, views

app_name = "django_dbtuning"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("indexes/", views.indexes, name="indexes"),
    path("tables/", views.tables, name="tables"),
    path("statements/", views.statements, name="statements"),
    # A str, validated by the view: garbage is a 400, not the 404 a converter would give.
    path("statements/<str:queryid>/", statement.statement, name="statement"),
    path("history/", views.history, name="history"),
]
