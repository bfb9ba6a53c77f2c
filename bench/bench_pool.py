"""Connection strategies under gunicorn (gthread): Django's default vs CONN_MAX_AGE (with and
without health checks) vs database().

The example shop serves a one-query view (`/api/products/count/`). Each strategy runs in
fresh gunicorn processes against a dedicated PostgreSQL whose `max_connections` we set:

1. throughput: max_connections=100, 2 workers x 8 threads, 16 keep-alive clients;
   strategies alternate for several rounds and the medians are reported.
2. overload: max_connections=20, 2 workers x 40 threads, 80 clients (4x the server's
   connections): counts "too many clients" failures.

The load comes from wrk (Debian's package; installed with apt-get when missing and this
runs as root), whose C event loop costs a fraction of what gunicorn and PostgreSQL spend
per request. Without it the bench says so and falls back to its asyncio client, which on a
small machine competes with the server for the CPU and flattens the differences.

Run: `.venv/bin/python bench/bench_pool.py` (or `make bench BENCH_ARGS=pool`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_dbtuning.embedded import EmbeddedPostgres, _free_port  # noqa: E402

STRATEGIES = ("django-default", "conn-max-age", "conn-max-age-checks", "dbtuning-pool")
LABELS = {
    "django-default": "Django's default (`CONN_MAX_AGE=0`)",
    "conn-max-age": "`CONN_MAX_AGE=600`",
    "conn-max-age-checks": "`CONN_MAX_AGE=600` + `CONN_HEALTH_CHECKS`",
    "dbtuning-pool": "`database()` (native pool, health checks)",
}
PATH = "/api/products/count/"
WRK: str | None = None  # set by main()
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DURATION = float(os.environ.get("BENCH_DURATION", "4"))


# wrk's report as one JSON line: its latency percentiles are in microseconds.
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "us": %d, "p50": %d, "p99": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Run:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    too_many_clients: int = 0
    # Filled by wrk, which reports percentiles and errors rather than each request.
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        if "p50_ms" in self.measured:
            return self.measured["p50_ms"]
        return (
            statistics.median(self.latencies) * 1000 if self.latencies else float("nan")
        )

    @property
    def p99_ms(self) -> float:
        if "p99_ms" in self.measured:
            return self.measured["p99_ms"]
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100)[98] * 1000

    @property
    def errors(self) -> int:
        if "errors" in self.measured:
            return int(self.measured["errors"])
        return sum(count for status, count in self.statuses.items() if status != "200")


def find_wrk() -> str | None:
    """wrk's path; installs Debian's package when missing and allowed, else None."""
    if found := shutil.which("wrk"):
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr, flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    return shutil.which("wrk")


def _wrk_load(wrk: str, port: int, clients: int, seconds: float) -> Run:
    script = Path(f"/tmp/dbtuning-bench-wrk-{os.getpid()}.lua")
    script.write_text(WRK_SCRIPT)
    try:
        result = subprocess.run(
            [wrk, "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "15s"]
            + ["-s", str(script), f"http://127.0.0.1:{port}{PATH}"],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        script.unlink()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Run(
        requests=report["requests"],
        seconds=report["us"] / 1e6,
        measured={
            "p50_ms": report["p50"] / 1000,
            "p99_ms": report["p99"] / 1000,
            "errors": report["errors"],
        },
    )


def load(port: int, clients: int, seconds: float) -> Run:
    """``clients`` keep-alive clients for ``seconds``: wrk, else the asyncio client."""
    if WRK is not None:
        return _wrk_load(WRK, port, clients, seconds)
    return asyncio.run(_load(port, clients, seconds))


async def _client(port: int, deadline: float, run: Run) -> None:
    request = f"GET {PATH} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    reader = writer = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:  # the server closed an idle keep-alive connection
                writer.close()
                writer = None
                continue
            status = status_line.split(b" ")[1].decode()
            length, close, chunked = 0, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                name, value = name.lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value == "close":
                    close = True
                elif name == "transfer-encoding" and value == "chunked":
                    chunked = True
            if chunked:
                while (size := int((await reader.readline()).strip() or b"0", 16)) > 0:
                    await reader.readexactly(size + 2)
                await reader.readline()
            else:
                await reader.readexactly(length)
            run.latencies.append(time.perf_counter() - started)
            run.statuses[status] += 1
            run.requests += 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            run.statuses["connection error"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _load(port: int, clients: int, seconds: float) -> Run:
    run = Run()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client(port, deadline, run) for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    return run


def prepare_server(max_connections: int) -> tuple[EmbeddedPostgres, str]:
    import psycopg

    server = EmbeddedPostgres(settings={"max_connections": str(max_connections)})
    server.start()
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("CREATE ROLE app LOGIN NOSUPERUSER")
        admin.execute("CREATE DATABASE shop OWNER app")
    url = f"postgres://app@127.0.0.1:{server.port}/shop"
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, str(ROOT / "example_project" / "manage.py"), "migrate", "-v0"],
        check=True,
        env=env,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO shop_product (sku, name, price, attributes) "
            "SELECT 'SKU-' || i, 'product ' || i, i, '{}' FROM generate_series(1, 500) i"
        )
    return server, url


def _measure(
    strategy: str,
    url: str,
    max_connections: int,
    workers: int,
    threads: int,
    clients: int,
) -> Run:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "pool_settings",
        "BENCH_DB_MODE": strategy,
        "BENCH_WORKERS": str(workers),
        "BENCH_THREADS": str(threads),
        "BENCH_MAX_CONNECTIONS": str(max_connections),
    }
    log_path = Path(f"/tmp/dbtuning-bench-gunicorn-{port}.log")
    with open(log_path, "w") as log:
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--worker-class",
                "gthread",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{port}",
                "--pythonpath",
                f"{ROOT / 'example_project'},{ROOT / 'bench'}",
                "--backlog",
                "2048",
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(port)
        load(port, clients, 1.0)  # warm up: imports, pools, caches
        run = load(port, clients, DURATION)
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        try:
            gunicorn.wait(15)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
    text = log_path.read_text(errors="replace")
    log_path.unlink()
    run.too_many_clients = text.count("too many clients") + text.count(
        "remaining connection slots are reserved"
    )
    return run


def _wait_for(port: int) -> None:
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", PATH)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on port {port}")


def throughput() -> dict[str, list[Run]]:
    server, url = prepare_server(100)
    runs: dict[str, list[Run]] = {strategy: [] for strategy in STRATEGIES}
    try:
        for _ in range(ROUNDS):
            for strategy in STRATEGIES:
                runs[strategy].append(
                    _measure(strategy, url, 100, workers=2, threads=8, clients=16)
                )
    finally:
        server.stop()
    return runs


def overload() -> dict[str, Run]:
    server, url = prepare_server(20)
    try:
        return {
            strategy: _measure(strategy, url, 20, workers=2, threads=40, clients=80)
            for strategy in STRATEGIES
        }
    finally:
        server.stop()


def main() -> None:
    global WRK
    WRK = find_wrk()
    if WRK is None:
        print(
            "wrk not found and not installable here (apt-get install wrk): falling back "
            "to the asyncio client, which may be the bottleneck on a small machine.",
            file=sys.stderr,
        )
    client = f"wrk ({WRK})" if WRK else "the asyncio client"
    load_before = os.getloadavg()[0]
    runs = throughput()
    rps = {s: statistics.median(run.rps for run in runs[s]) for s in STRATEGIES}
    print(
        f"Throughput: one-query view, gunicorn gthread 2 workers x 8 threads, 16 keep-alive "
        f"clients ({client}), max_connections=100; median of {ROUNDS} alternating "
        f"{DURATION:g}s runs; {os.cpu_count()} CPUs, load average {load_before:.1f} "
        "before the run.\n"
    )
    print(
        "| strategy | requests/s | vs default | vs CONN_MAX_AGE=600 | p50 ms | p99 ms "
        "| errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for strategy in STRATEGIES:
        p50 = statistics.median(run.p50_ms for run in runs[strategy])
        p99 = statistics.median(run.p99_ms for run in runs[strategy])
        errors = sum(run.errors for run in runs[strategy])
        print(
            f"| {LABELS[strategy]} | {rps[strategy]:,.0f} "
            f"| {rps[strategy] / rps['django-default']:.2f}x "
            f"| {rps[strategy] / rps['conn-max-age']:.2f}x | {p50:.1f} | {p99:.1f} "
            f"| {errors} |"
        )
    pool_rounds = ", ".join(
        f"{pool.rps / persistent.rps:.2f}x ({pool.rps:,.0f}/{persistent.rps:,.0f})"
        for pool, persistent in zip(
            runs["dbtuning-pool"], runs["conn-max-age"], strict=True
        )
    )
    print(f"\nPool / CONN_MAX_AGE=600 per round (req/s): {pool_rounds}.")
    print(f"Load average after the run: {os.getloadavg()[0]:.1f}.")
    print(
        "\nOverload: max_connections=20, 2 workers x 40 threads, 80 clients "
        f"(4x the server's connections), {DURATION:g}s.\n"
    )
    print(
        "| strategy | requests/s | p50 ms | p99 ms | failed requests "
        "| 'too many clients' in log |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for strategy, run in overload().items():
        print(
            f"| {LABELS[strategy]} | {run.rps:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} "
            f"| {run.errors} | {run.too_many_clients} |"
        )


if __name__ == "__main__":
    main()
