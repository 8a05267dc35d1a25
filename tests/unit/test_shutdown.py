"""plantstream/core/shutdown.py: a signal stops a component within its deadline even when the main thread is
stuck in a blocking call (as a consumer closing against a broker that is gone), in a real child process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from plantstream.core.shutdown import EXIT_FORCED_STOP, Deadline

CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from plantstream.core.shutdown import StopOnSignal
    stopper = StopOnSignal("the test component", float(sys.argv[1])).install()
    asked = threading.Event()
    stopper.on_stop(lambda: (asked.set(), print("stop asked", flush=True)))
    print("ready", flush=True)
    if sys.argv[2] == "stuck":
        threading.Event().wait()  # the main thread never returns to Python: no signal handler would run here
    else:
        asked.wait()
        print("stopped in order", flush=True)
    """
)


def child(deadline_s: float, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(deadline_s), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_stuck_main_thread_still_stops_within_the_deadline() -> None:
    proc = child(1.0, "stuck")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    took = time.monotonic() - t0
    assert proc.returncode == EXIT_FORCED_STOP
    assert "stop asked" in out
    assert "the test component did not stop within 1 s of the signal" in err
    assert 0.9 <= took < 3.0


def test_an_orderly_stop_exits_normally_and_a_second_signal_at_once() -> None:
    proc = child(30.0, "orderly")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped in order" in out
    stuck = child(30.0, "stuck")
    stuck.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    t0 = time.monotonic()
    stuck.send_signal(signal.SIGTERM)
    stuck.communicate(timeout=10)
    assert stuck.returncode == EXIT_FORCED_STOP and time.monotonic() - t0 < 2


def test_the_deadline_runs_its_last_words_and_exits_once(capfd: pytest.CaptureFixture[str]) -> None:
    codes: list[int] = []
    flushed: list[str] = []
    d = Deadline("the sink", 0.05, lambda: flushed.append("stats"), backstop=False, exit=codes.append)
    d.arm()
    d.arm()
    time.sleep(0.3)
    assert codes == [EXIT_FORCED_STOP] and flushed == ["stats"]
    assert "the sink did not stop within 0 s" in capfd.readouterr().err
