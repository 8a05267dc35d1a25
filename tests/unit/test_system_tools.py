"""A missing system program fails its test with the install command (no silent skip)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests import system

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_program_fails_with_the_apt_get_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setitem(system.PROGRAMS, "socat", ("socat", None))
    with pytest.raises(pytest.fail.Exception, match=r"socat is not installed\. Fix: sudo apt-get install -y socat"):
        system.require("socat")


def test_every_program_the_tests_require_is_one_make_test_installs() -> None:
    script = (ROOT / "tools" / "system-packages").read_text()
    for package, _ in system.PROGRAMS.values():
        assert f'need="$need {package}"' in script, f"{package} is required by tests but not installed by make test"


def test_the_package_check_runs_and_lists_only_packages() -> None:
    out = subprocess.run([ROOT / "tools" / "system-packages", "check"], capture_output=True, text=True, check=True)
    known = {"openjdk-17-jre-headless", "maven", "mosquitto", "postgresql", "socat", "chromium"}
    assert set(out.stdout.split()) <= known
