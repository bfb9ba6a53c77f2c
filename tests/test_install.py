"""A new project on Django 6.1: the package with every extra installs cleanly next to it.

One fresh venv on Python 3.13 (pip reaches the package index), with the extras read from
pyproject.toml so the test checks what users get: ``pip check`` is clean, nothing is held
back at an older release to fit Django 6.1 (the resolver's quiet way out of a conflict:
django-prometheus 2.5 requires ``Django<6.1``, so pip settled on 2.4), and ``/metrics``
serves the dbtuning series through prometheus_client alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.report.test_live import samples

ROOT = Path(__file__).resolve().parents[1]
DJANGO = "django>=6.1,<6.2"
# Pinned on purpose (Django), bootstrapped by venv (pip), or built from this tree.
NOT_HELD_BACK = ("django", "pip", "django-dbtuning")


def python313() -> Path | None:
    """The newest 3.13 under ``$(pyenv root)/versions``, else a working python3.13 on PATH."""
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = sorted(
        Path(pyenv_root).glob("versions/3.13*/bin/python3.13"),
        key=lambda path: [int(n) for n in path.parts[-3].split(".") if n.isdigit()],
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("python3.13")  # pyenv's shim answers even without a 3.13
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return Path(found)
    return None


PYTHON = python313()

SETTINGS = """
import os

from django_dbtuning.pool import database

SECRET_KEY = "install-test-only"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "install_urls"
INSTALLED_APPS = ["django_dbtuning"]
MIDDLEWARE = ["django_dbtuning.middleware.QueryCountMiddleware"]
DATABASES = {"default": database(os.environ["DATABASE_URL"])}
DBTUNING = {"REPORT_METRICS_SECTIONS": ["connections"]}
"""

URLS = """
from django.db import connection
from django.http import HttpResponse
from django.urls import path

from django_dbtuning.report.live import metrics_view


def work(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok")


urlpatterns = [path("work/", work, name="work"), path("metrics", metrics_view)]
"""

SCRAPE = """
import django

django.setup()

from django.db import connections
from django.test import Client

client = Client()
assert client.get("/work/").status_code == 200
response = client.get("/metrics")
assert response.status_code == 200, response.status_code
print(response.content.decode())
connections["default"].close_pool()
"""


def run(
    *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def check_install(project: Path, tmp_path: Path, python: Path) -> None:
    """Install ``project`` with every extra and Django 6.1 in a fresh venv; check it."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    extras = ",".join(sorted(pyproject["project"].get("optional-dependencies", {})))
    venv = tmp_path / "venv"
    run(python, "-m", "venv", venv)
    pip = (venv / "bin" / "python", "-m", "pip")
    run(*pip, "install", "--quiet", f"{project}[{extras}]", DJANGO)
    run(*pip, "check")
    exclude = [arg for name in NOT_HELD_BACK for arg in ("--exclude", name)]
    outdated = json.loads(run(*pip, "list", "--outdated", "--format=json", *exclude))
    held_back = {d["name"]: f"{d['version']} < {d['latest_version']}" for d in outdated}
    assert held_back == {}, f"held back to fit {DJANGO} [{extras}]: {held_back}"

    site = tmp_path / "site"
    site.mkdir()
    (site / "install_settings.py").write_text(textwrap.dedent(SETTINGS))
    (site / "install_urls.py").write_text(textwrap.dedent(URLS))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "DJANGO_"))
    }
    env.update(DJANGO_SETTINGS_MODULE="install_settings", PYTHONPATH=str(site))
    # cwd away from the checkout, so the venv imports the installed package.
    scraped = run(venv / "bin" / "python", "-c", SCRAPE, cwd=site, env=env)
    values = samples(scraped)
    default = (("alias", "default"),)
    assert values[("dbtuning_up", default)] == 1, scraped
    assert values[("dbtuning_pool_open", default)] == 1, scraped
    view = (("alias", "default"), ("view", "work"))
    assert values[("dbtuning_request_queries_count", view)] == 1, scraped


@pytest.mark.skipif(
    PYTHON is None,
    reason="needs Python 3.13 (python3.13 on PATH or $(pyenv root)/versions/3.13.*) "
    "to install the package with every extra next to Django 6.1 in a fresh venv",
)
def test_every_extra_installs_cleanly_next_to_django_6_1(tmp_path):
    assert PYTHON is not None
    check_install(ROOT, tmp_path, PYTHON)
