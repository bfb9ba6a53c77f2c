"""The staff dashboard: ``path("dbtuning/", include("django_dbtuning.urls"))``.

Read-only pages in the admin's look over the same collectors as ``manage.py dbreport``
(:func:`~django_dbtuning.report.runner.run_report`, same timeouts, same masking) and over
the snapshots ``dbreport --save`` stored: overview, indexes, tables, statements, history.
"""
