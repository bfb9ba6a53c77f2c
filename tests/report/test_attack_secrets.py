"""Adversarial pass over connection errors: whatever an unreachable alias' settings hold,
its password never reaches text, JSON or Prometheus output, nor a --save message."""

from __future__ import annotations

import pytest

from django_dbtuning.report import as_json, as_prometheus, as_text, run_report
from tests.report.test_report import dbreport, extra_alias

pytestmark = pytest.mark.django_db

PASSWORD = "pw-Zz9-attack"


@pytest.mark.parametrize(
    "overrides",
    [
        {"PORT": "abc"},
        {"HOST": "127.0.0.1", "PORT": 1},
        {"HOST": "no-such-host.invalid"},
        {"OPTIONS": {"sslmode": "bogus"}},
        {"OPTIONS": {"options": f"-c statement_timeout={PASSWORD}"}},
        {"USER": f"nouser'{PASSWORD}"},
        # A password that is (part of) a name: the name would say it.
        {"NAME": f"nodb {PASSWORD}"},
        {"HOST": f"127.0.0.1 password={PASSWORD}"},
        {"OPTIONS": {"service": PASSWORD}},
        {"PORT": 1, "OPTIONS": {"sslpassword": PASSWORD + "-ssl"}},
    ],
    ids=repr,
)
def test_no_password_in_any_output_of_an_unreachable_alias(overrides):
    with extra_alias("attack_bad", PASSWORD=PASSWORD, **overrides):
        report = run_report(["attack_bad"], sections="settings")
        assert not report.databases["attack_bad"].reachable
        outputs = [as_json(report), as_text(report), as_prometheus(report)]
        out, err, code = dbreport("--database", "attack_bad", "--save")
        assert code == 2
        outputs += [out, err]
    for output in outputs:
        assert PASSWORD not in output
