"""System programs some tests need: a missing one fails the test with the command that installs it.

`make test` installs them (tools/system-packages), so a missing one means the suite runs outside it;
the failure says what to run rather than skipping the test silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# program -> (Debian package, where Debian puts it when it is not on PATH)
PROGRAMS = {
    "socat": ("socat", None),
    "mosquitto": ("mosquitto", "/usr/sbin/mosquitto"),
    "chromium": ("chromium", "/usr/bin/chromium"),
}


def require(program: str) -> str:
    """The program's path; fails the calling test with the install command when it is missing."""
    package, fallback = PROGRAMS[program]
    found = shutil.which(program) or (fallback if fallback and Path(fallback).exists() else None)
    if found is None:
        pytest.fail(
            f"{program} is not installed. Fix: sudo apt-get install -y {package}   (make test installs it when run "
            "as root; tools/system-packages lists what is missing)",
            pytrace=False,
        )
    return found
