"""The progress watchdog's rule (processors/worker/watchdog.py): stalled = work waiting at a position that
does not move, for longer than the limit, with the broker's answer every time."""

from __future__ import annotations

from processors.worker.watchdog import Watchdog, describe

R0, R1, REC = "plant.readings.v1[0]", "plant.readings.v1[1]", "table recovery"


def test_a_partition_with_records_waiting_and_no_progress_is_stuck_after_the_limit() -> None:
    w = Watchdog(stall_after_s=60)
    w.observe(0, {R0: (10, 50), R1: (7, 7)})  # R1 read to the end: nothing waits
    w.observe(30, {R0: (10, 80), R1: (7, 9)})
    assert w.stuck(59) == {}
    w.observe(61, {R0: (10, 90), R1: (8, 9)})  # R1 moves
    assert set(w.stuck(61)) == {R0}
    text = describe(w.stuck(61), 61)
    assert "plant.readings.v1[0] at 10 of 90 for 61 s" in text


def test_progress_restarts_the_clock_and_nothing_waiting_clears_it() -> None:
    w = Watchdog(stall_after_s=60)
    w.observe(0, {R0: (10, 50)})
    w.observe(50, {R0: (11, 50)})
    w.observe(100, {R0: (11, 50)})
    assert w.stuck(100) == {}
    w.observe(105, {R0: (50, 50)})
    w.observe(200, {R0: (50, 51)})
    assert w.stuck(200) == {}
    assert w.stuck(261) != {}


def test_a_broker_that_does_not_answer_restarts_every_clock() -> None:
    w = Watchdog(stall_after_s=60)
    w.observe(0, {R0: (10, 50)})
    w.unknown()  # a broker outage: its records may be gone, the worker is not to blame
    w.observe(100, {R0: (10, 50)})
    assert w.stuck(100) == {}
    assert set(w.stuck(161)) == {R0}


def test_partitions_no_longer_held_are_forgotten() -> None:
    w = Watchdog(stall_after_s=60)
    w.observe(0, {R0: (10, 50), R1: (1, 5)})
    w.observe(10, {R1: (1, 5)})  # R0 went to another worker
    w.observe(100, {R0: (10, 50), R1: (1, 5)})
    assert set(w.stuck(100)) == {R1}


def test_readings_are_excused_while_the_table_recovery_progresses_but_not_when_it_stops() -> None:
    w = Watchdog(stall_after_s=60)
    for t in range(0, 200, 5):
        remaining = max(1, 1000 - 10 * t)  # recovers for 100 s, then waits for good for one record
        w.observe(t, {R0: (10, 50), REC: (-remaining, 0)})
        if w.progressed(REC, t, 7.5):
            w.excuse(t, [R0])
    assert set(w.stuck(199)) == {R0, REC}
    assert w.stuck(199)[R0].since == 105  # excused until one check after the recovery last moved (at 100)
