"""`make bench`: run every bench/bench_*.py against one PostgreSQL and print their tables.

Each script is standalone (``python bench/bench_copy.py``) and prints a Markdown table; this
runner starts one embedded server (unless DATABASE_URL) and runs them one after another, so
they never compete for the CPU. ``make bench BENCH_ARGS="copy"`` runs the matching ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str]) -> int:
    from django_dbtuning.embedded import database_url
    from django_dbtuning.exceptions import DbTuningError

    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(word in s.stem for word in argv)]
    if not scripts:
        print("no benchmark matched", file=sys.stderr)
        return 2
    try:
        database_url()  # exported to the environment, shared by every script
    except DbTuningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for script in scripts:
        print(f"\n## {script.stem}\n", flush=True)
        started = time.perf_counter()
        status = subprocess.call([sys.executable, str(script)], env=os.environ.copy())
        print(
            f"\n({script.name}: {time.perf_counter() - started:.0f}s, exit {status})",
            flush=True,
        )
        failed += status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
