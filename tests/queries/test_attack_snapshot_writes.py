"""Query snapshot files as the file system sees them: permissions kept, clear failures."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from django_dbtuning.queries.snapshots import update

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def _add(name):
    def change(snapshots):
        snapshots.setdefault("test_x", {})[name] = [{"count": 1, "sql": "SELECT 1"}]

    return change


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_is_readable_by_others_like_any_source_file(tmp_path):
    path = tmp_path / "test_x.queries.json"
    update(path, _add("1"))
    assert _mode(path) == 0o644  # was 0o600: mkstemp's mode went to the committed file


@pytest.mark.parametrize("mode", [0o664, 0o640, 0o444])
def test_an_update_keeps_the_files_permissions(tmp_path, mode):
    path = tmp_path / "test_x.queries.json"
    update(path, _add("1"))
    os.chmod(path, mode)
    update(path, _add("2"))
    assert _mode(path) == mode
    assert "test_x" in path.read_text()
