"""Headless Chromium for the browser tests: Debian's package, driven by Playwright through
``executable_path`` (Playwright's own browser download cannot reach the internet here)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"],
            check=False,
            capture_output=True,
            timeout=600,
        )
        found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            "no chromium on PATH and it could not be installed (apt-get install "
            "chromium needs root)"
        )
    return found
