"""The multivariate anomaly model gives, bit for bit, the records and final state recorded from its numpy
implementation (before its per-frame steps were compiled, processors/anomaly/kernels.py) on a sequence that
goes through warm-up, alarms, stops, drift references, a stuck sensor, a tag joining and a checkpoint."""

from __future__ import annotations

import gzip
import json

from tests.unit import anomaly_sequence


def test_scores_and_state_equal_the_recorded_ones_bit_for_bit() -> None:
    recorded = json.loads(gzip.decompress(anomaly_sequence.RECORDED.read_bytes()))
    now = anomaly_sequence.run()
    assert now["frames"] == recorded["frames"]
    assert len(now["scores"]) == len(recorded["scores"])
    for i, (a, b) in enumerate(zip(now["scores"], recorded["scores"], strict=True)):
        assert a == b, f"record {i}: {a} != recorded {b}"
    assert sum(s[2] for s in now["scores"]) > 100  # the sequence raises alarms (not only warm-up zeros)
    assert now["digest"] == recorded["digest"]  # every record (contributions too) and the final state


def test_the_kernels_are_compiled_when_the_stage_starts_not_on_a_frame() -> None:
    from processors.anomaly import kernels
    from processors.anomaly.model import AnomalyStage

    AnomalyStage()
    names = ("quantiles_update", "learn_cov", "features", "stuck", "learn_residual")
    names += ("learn_detectors", "detect", "judge", "ratios")
    compiled = {n: list(getattr(kernels, n).signatures) for n in names}
    assert all(len(s) == 1 for s in compiled.values()), compiled
    anomaly_sequence.run()  # every path of the model: no kernel is compiled again for other types
    assert {n: list(getattr(kernels, n).signatures) for n in names} == compiled
