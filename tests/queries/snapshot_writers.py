"""A process that writes snapshots into a shared file (the concurrency test's workers).

Imports nothing that needs Django set up, so ``multiprocessing``'s spawn can run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_many(path: str, worker: int, count: int, start: Any) -> None:
    """Record ``count`` snapshots of test ``w<worker>_<i>``, as fast as possible."""
    from django_dbtuning.queries.snapshots import check

    start.wait()
    for i in range(count):
        check(
            Path(path),
            f"w{worker}_{i}",
            "1",
            [{"count": 1, "sql": f"SELECT {worker}"}],
            update_mode=False,
            create=True,
        )
