"""The runserver console of a new project: DEBUG=True, no LOGGING, one message per finding.

A real ``manage.py runserver`` in a subprocess, so Python's last-resort handler and the
warnings machinery behave as they do on a developer's machine (under pytest, the logging
plugin's handlers on the root logger would hide the difference).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FINDING = "N+1 query: ran 4 times"

SETTINGS = """
import os

from django_dbtuning.pool import database

SECRET_KEY = "console-test-only"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "console_urls"
INSTALLED_APPS = ["django_dbtuning"]
MIDDLEWARE = ["django_dbtuning.middleware.QueryCountMiddleware"]
DATABASES = {"default": database(os.environ["DATABASE_URL"])}
"""

URLS = """
from django.db import connection
from django.http import HttpResponse
from django.urls import path


def n_plus_one(request):
    with connection.cursor() as cursor:
        for i in range(4):
            cursor.execute("SELECT %s::int", [i])
    return HttpResponse("ok")


def ok(request):
    return HttpResponse("ok")


urlpatterns = [path("n-plus-one/", n_plus_one), path("ok/", ok)]
"""
LOOP_LINE = (
    textwrap.dedent(URLS)
    .splitlines()
    .index('            cursor.execute("SELECT %s::int", [i])')
    + 1
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, server: subprocess.Popen[bytes], deadline: float) -> None:
    """GET ``url``, retrying while the server starts."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
                return
        except (ConnectionError, urllib.error.URLError):
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def runserver_stderr(tmp_path: Path) -> str:
    """Start runserver, request the N+1 view once, return everything it wrote to stderr."""
    (tmp_path / "console_settings.py").write_text(textwrap.dedent(SETTINGS))
    (tmp_path / "console_urls.py").write_text(textwrap.dedent(URLS))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONWARNINGS", "PYTHONDEVMODE", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="console_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "django", "runserver", "--noreload", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            get(f"http://127.0.0.1:{port}/n-plus-one/", server, deadline)
            # The server logs a request after answering it: wait for the second request's
            # line so everything the first one printed is in the file.
            get(f"http://127.0.0.1:{port}/ok/", server, deadline)
            while '"GET /ok/ HTTP/1.1" 200' not in stderr_path.read_text():
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return stderr_path.read_text()


def test_debug_console_prints_each_finding_once(tmp_path):
    output = runserver_stderr(tmp_path)
    assert output.count(FINDING) == 1, output
    # The warning, as Python prints Django's own warnings: the user's file and line, the
    # message with its fix, then the source line; and runserver's request line after it.
    assert re.search(
        rf"^console_urls\.py:{LOOP_LINE}: NPlusOneWarning: N\+1 query: ran 4 times .*\n"
        r"    fix: .*\n    sql: SELECT %s::int\n"
        r'  cursor\.execute\("SELECT %s::int", \[i\]\)\n'
        r'\[[^]]+\] "GET /n-plus-one/ HTTP/1\.1" 200 2$',
        output,
        re.MULTILINE,
    ), output
    assert "Traceback" not in output, output
