"""``ENGINE = "django_dbtuning.pool.postgresql"``: Django's PostgreSQL backend, for a pool.

:func:`django_dbtuning.pool.database` sets it on every pooled entry; ``base.py`` holds the
``DatabaseWrapper`` Django loads. Everything else (operations, introspection, schema
editor, ``vendor == "postgresql"``) is Django's own.
"""
