"""Instructions per query of N+1 detection, counted by Valgrind: a figure without noise.

Standalone: ``.venv/bin/python bench/bench_nplusone_instructions.py`` (needs ``valgrind``
and a C compiler: ``apt-get install valgrind gcc``; embedded PostgreSQL unless
DATABASE_URL). It runs the same 200-query N+1 view and variants as ``bench_nplusone.py``
under Callgrind and counts the instructions each variant executes in this process (the
database server runs natively, outside the count), per query, against the uninstrumented
view.

The CPU-time benchmark cannot tell a few hundred instructions from the ±25 ms a request
varies by on a shared VM; an instruction count is the same on every run (±1 %, with
PYTHONHASHSEED fixed), so two versions of the code compare exactly: run this script in a
checkout of each. Instructions are not time — code that misses the CPU caches runs fewer
per nanosecond — so the time per query comes from ``bench_nplusone.py``'s in-situ row.

Callgrind's client requests (start, zero, dump) come from a 3-line C helper compiled here
at run time with the ``valgrind/callgrind.h`` header.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
QUERIES = 200  # bench_nplusone's view
HELPER = """
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; }
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def build_helper(directory: Path) -> None:
    source = directory / "callgrind_helper.c"
    source.write_text(HELPER)
    library = str(directory / "callgrind_helper.so")
    subprocess.run(
        ["cc", "-O1", "-shared", "-fPIC", "-o", library, str(source)], check=True
    )


def measure(directory: Path) -> None:
    """Inside Valgrind: run every variant ROUNDS times, one Callgrind dump per variant."""
    import bench.bench_nplusone as nplusone

    helper = ctypes.CDLL(str(directory / "callgrind_helper.so"))
    nplusone.configure()
    nplusone.seed()
    runs = nplusone.variants()
    (directory / "variants").write_text("\n".join(runs))
    for function in runs.values():  # warm caches, connections, fingerprints
        for _ in range(3):
            function()
    gc.collect()
    gc.disable()  # a collection lands on whichever variant crosses the threshold
    helper.start()
    for name, function in runs.items():
        gc.collect()
        helper.zero()
        for _ in range(ROUNDS):
            function()
        helper.dump(re.sub(r"\W+", "_", name).encode())


def report(directory: Path) -> None:
    names = (directory / "variants").read_text().splitlines()
    totals: dict[str, int] = {}
    for dump in directory.glob("callgrind.out.*"):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
        total = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        if trigger and total:
            totals[trigger.group(1)] = int(total.group(1))
    keys = [re.sub(r"\W+", "_", name) for name in names]
    per_query = {key: totals[key] / ROUNDS / QUERIES for key in keys if key in totals}
    base = per_query[keys[0]]
    print(
        f"{QUERIES}-query N+1 view, {ROUNDS} runs per variant under Callgrind: "
        "instructions executed in the Django process per query.\n"
    )
    print("| variant | instructions per query | added per query | vs dbtuning |")
    print("| --- | ---: | ---: | ---: |")
    ours = per_query.get(keys[2], base) - base
    for name, key in zip(names, keys, strict=True):
        if key not in per_query:
            continue
        added = per_query[key] - base
        ratio = "—" if key == keys[0] or ours <= 0 else f"{added / ours:.1f}×"
        print(f"| {name} | {per_query[key]:,.0f} | {added:+,.0f} | {ratio} |")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        measure(Path(sys.argv[2]))
        return
    missing = [tool for tool in ("valgrind", "cc") if shutil.which(tool) is None]
    if missing:  # not an error for `make bench`: the CPU-time benchmark still runs
        print(f"skipped: needs {' and '.join(missing)} (apt-get install valgrind gcc)")
        return
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        build_helper(directory)
        environment = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={directory}/callgrind.out.%p",
                sys.executable,
                __file__,
                "--inside",
                str(directory),
            ],
            check=True,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        report(directory)


if __name__ == "__main__":
    main()
