"""Pure parts of `plantstream bench alerts|memory`: quantiles, the trip schedule, the bench config."""

from __future__ import annotations

import numpy as np
import pytest
from asyncua import ua

from plantstream.bench.alerts import TripSchedule, quantiles_ms
from plantstream.bench.memory import bench_raw
from plantstream.core.config import OpcUaSecurityMode, OpcUaSecurityPolicy, Settings
from plantstream.simulators.opcua import OpcUaSimulatorError, offered_policies
from plantstream.simulators.synthetic import SyntheticPlant


def test_quantiles_are_nearest_rank_in_ms() -> None:
    lat = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    q = quantiles_ms(lat)
    assert (q["p50"], q["p95"], q["p99"], q["max"], q["n"]) == (50.0, 95.0, 99.0, 100.0, 100)
    assert quantiles_ms([]) == {}
    assert quantiles_ms([0.25])["p99"] == 250.0


def test_trip_schedule_trips_the_asked_fraction_and_spreads_assets() -> None:
    s = TripSchedule(rate_hz=5.0, trip_every_s=20.0, trip_scans=3, assets=100)
    tripped = np.array([[s.tripped(a, seq) for seq in range(1000)] for a in range(100)])
    assert tripped.mean() == pytest.approx(s.fraction()) and s.fraction() == pytest.approx(0.03)
    # each trip is one run of trip_scans scans, so one RAISED and one CLEARED per trip
    edges = np.diff(tripped.astype(int), axis=1)
    assert (edges == 1).sum() == pytest.approx((edges == -1).sum(), abs=100)
    first = [int(np.argmax(row)) for row in tripped]
    assert len(set(first)) > 50  # not all assets trip in the same scan


def test_memory_bench_config_warms_every_model_up_early() -> None:
    plant = SyntheticPlant(30, 20, 1.0)
    s = Settings(**bench_raw(plant, 20, {"state_dir": "/tmp/x"}))
    assert len(s.plant.assets) == 30 and all(len(d.tags) == 20 for d in s.devices)
    assert all(a.anomaly is not None and a.anomaly.warmup_frames == 20 for a in s.plant.assets)
    assert s.pipeline.alerts


def test_opcua_simulator_offers_only_the_configured_modes() -> None:
    both = [OpcUaSecurityPolicy.BASIC256SHA256, OpcUaSecurityPolicy.AES256_SHA256_RSAPSS]
    enc = offered_policies(both, [OpcUaSecurityMode.SIGN_AND_ENCRYPT])
    assert enc == [
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ]
    assert ua.SecurityPolicyType.Basic256Sha256_Sign in offered_policies(both[:1], list(OpcUaSecurityMode))
    assert offered_policies([OpcUaSecurityPolicy.NONE], [OpcUaSecurityMode.SIGN]) == [ua.SecurityPolicyType.NoSecurity]
    with pytest.raises(OpcUaSimulatorError, match="offers no endpoint"):
        offered_policies(both, [OpcUaSecurityMode.NONE])
