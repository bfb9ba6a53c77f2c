"""dbreport's exit codes as the README states them: 0 done, 1 --fail-on matched or bad
arguments (argparse's included) or an --output that cannot be written, 2 unreachable;
each error is one line on stderr, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.report.test_report import dbreport

ROOT = Path(__file__).resolve().parents[2]
# Arguments are checked before any connection; when the report does run, this alias is
# refused at once (and its password must never show).
UNREACHABLE = "postgres://someone:hunter2-secret@127.0.0.1:1/nowhere"

BAD_ARGUMENTS = [
    (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["--fail-on", "info"], "argument --fail-on: invalid choice: 'info'"),
    (["--top", "many"], "argument --top: invalid int value: 'many'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--output"], "argument --output: expected one argument"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS)
def test_argument_errors_exit_1_via_call_command(args, message):
    out, error, code = dbreport(*args)
    assert code == 1
    assert message in error
    assert "\n" not in error
    assert out == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "xml"}, "--format must be one of text, json, prometheus"),
        ({"fail_on": "info"}, "--fail-on must be warning or error"),
        ({"top": "3"}, "--top must be an int >= 0"),
    ],
)
def test_keyword_options_are_checked_like_arguments(options, message):
    with pytest.raises(CommandError, match=message) as caught:
        call_command("dbreport", **options)
    assert caught.value.returncode == 1


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "dbreport",
            "--settings=tests.settings",
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": UNREACHABLE},
        timeout=120,
        cwd=ROOT,
    )


def test_argument_errors_exit_1_from_the_command_line():
    # One subprocess (each costs a second); call_command covers every error above.
    args, message = BAD_ARGUMENTS[0]
    result = manage(*args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("CommandError: ")
    assert message in lines[0]
    assert "usage:" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# -- --output --------------------------------------------------------------------------------


def output_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("")
    return {
        "missing directory": (tmp_path / "missing" / "report.json", "does not exist"),
        "a directory": (tmp_path / "a-directory", "is a directory"),
        "parent is a file": (tmp_path / "a-file" / "report.json", "is not a directory"),
    }


@pytest.mark.parametrize(
    "case", ["missing directory", "a directory", "parent is a file"]
)
def test_bad_output_path_is_one_line_exit_1(tmp_path, case):
    target, message = output_cases(tmp_path)[case]
    out, error, code = dbreport("--format", "json", "--output", str(target))
    assert code == 1
    assert error.startswith(f"--output {target}: ") and message in error
    assert "\n" not in error
    # Nothing was created on the way (no directory made, no stray temporary file).
    assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory", "a-file"]
    assert not any((tmp_path / "a-directory").iterdir())


def test_bad_output_path_from_the_command_line(tmp_path):
    target, _ = output_cases(tmp_path)["missing directory"]
    result = manage("--output", str(target))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"CommandError: --output {target}: {target.parent} does not exist"]


def test_unwritable_output_directory_from_the_command_line(tmp_path):
    if os.geteuid() == 0:
        # root passes every permission check; sysfs still refuses new files (EACCES),
        # which only shows when the file is created: the report has run by then.
        target = Path("/sys/dbreport-test.prom")
        expected = f"--output {target}: cannot write there (Permission denied)"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "report.prom"
        expected = f"--output {target}: no permission to create files in {locked}"
    result = manage("--output", str(target))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"CommandError: {expected}"]
    assert not target.exists()
