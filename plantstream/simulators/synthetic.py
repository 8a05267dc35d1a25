"""A synthetic plant for benchmarks, sized by flags: N machines x T tags.

Every machine has a machine-state tag, cumulative total/good counters and process values that
behave like sensors (noise around levels of very different scales, a slow common load factor), so
the worker's OEE, alert rules and anomaly models do the work they do on a real plant. A benchmark
on constant or sawtooth values would measure a different program: the anomaly model would
re-baseline all the time and the state machine would never change.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plantstream.core.records import ReadingFrame, reading_frame, sample

STATE_TAG = "state"
TOTAL_TAG = "count_total"
GOOD_TAG = "count_good"
ALERT_TAG = "pv00"  # the threshold rule watches this one
RUN, IDLE, UNPLANNED = 1, 2, 4


def asset_name(a: int) -> str:
    return f"bench.site{a % 4}.area{a % 8}.line{a % 16}.m{a:05d}"


class SyntheticPlant:
    """Frames for `assets` machines with `tags` samples each (3 of them state and counters)."""

    def __init__(self, assets: int, tags: int, rate_hz: float, seed: int = 0) -> None:
        if tags < 4:
            raise ValueError("tags per asset must be at least 4: state, two counters and a process value")
        self.assets = [asset_name(a) for a in range(assets)]
        self.rate_hz = rate_hz
        self.pv_tags = [f"pv{k:02d}" for k in range(tags - 3)]
        self.tags = [STATE_TAG, TOTAL_TAG, GOOD_TAG, *self.pv_tags]
        rng = np.random.default_rng(seed)
        self._rng = rng
        p = len(self.pv_tags)
        self.levels = 10.0 ** rng.integers(0, 4, size=(assets, p)) * rng.uniform(1, 5, size=(assets, p))
        self.coupling = rng.uniform(0.2, 1.0, size=(assets, p))
        self.seq = [0] * assets
        self.total = [0] * assets
        self.scrap = [0] * assets

    # -- config ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The plant and devices sections: assets with an OEE profile (state tag, counters)."""
        devices = []
        for a, path in enumerate(self.assets):
            tags: list[dict[str, Any]] = [
                {"name": STATE_TAG, "address": 0, "role": "machine_state"},
                {"name": TOTAL_TAG, "address": 1, "type": "uint32", "role": "counter_total"},
                {"name": GOOD_TAG, "address": 3, "type": "uint32", "role": "counter_good"},
            ]
            tags += [{"name": t, "address": 5 + 2 * k, "type": "float32"} for k, t in enumerate(self.pv_tags)]
            # never polled: the benchmark writes frames straight to Kafka; the devices give the worker its tags
            devices.append({"name": f"m{a:05d}", "protocol": "modbus_tcp", "asset": path, "port": 1, "tags": tags})
        return {
            "plant": {
                "name": "bench",
                "assets": [{"path": p, "ideal_cycle_time_s": 10 / self.rate_hz} for p in self.assets],
            },
            "devices": devices,
        }

    def alert_rules(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "pv00-high",
                "asset": "bench.*.*.*.*",
                "kind": "threshold",
                "tag": ALERT_TAG,
                "above": float(self.levels[:, 0].max()) * 10,  # above every level: trips only on spikes
                "hysteresis": 1.0,
            }
        ]

    # -- frames ---------------------------------------------------------------------------------

    def state_at(self, seq: int) -> int:
        # every 600 scans: 20 scans idle, then (every other cycle) 30 scans of unplanned stop
        phase = seq % 1200
        if 570 <= phase < 590:
            return IDLE
        if 1150 <= phase < 1180:
            return UNPLANNED
        return RUN

    def values(self, a: int, seq: int) -> np.ndarray:
        """Process values of machine a at scan seq: level x (load factor) + noise."""
        load = 1.0 + 0.1 * math.sin(2 * math.pi * seq / (600 * self.rate_hz))
        noise = self._rng.normal(0.0, 0.01, size=len(self.pv_tags))
        return np.asarray(self.levels[a] * (1.0 + self.coupling[a] * (load - 1.0) + noise))

    def frame(self, a: int, scan_time_us: int) -> ReadingFrame:
        """Machine a's next scan as a ReadingFrame record."""
        c = self.frame_columns(a, scan_time_us)
        samples = [sample(t, scan_time_us, v) for t, v in zip(self.tags, c["values"].tolist(), strict=True)]
        return reading_frame(
            asset=c["asset"],
            device=c["device"],
            seq=c["seq"],
            producer_id=c["producer_id"],
            scan_time=scan_time_us,
            samples=samples,
        )

    def frame_columns(self, a: int, scan_time_us: int) -> dict[str, Any]:
        """Machine a's next scan as the arguments of Codec.encode_columns: every sample at the scan time,
        GOOD, no unit (the same frame `frame` builds, without a Python step per sample)."""
        seq = self.seq[a]
        self.seq[a] += 1
        state = self.state_at(seq)
        if state == RUN and seq % 10 == 0:
            self.total[a] += 1
            if seq % 370 == 0:
                self.scrap[a] += 1
        values = np.empty(len(self.tags))
        values[0] = state
        values[1] = self.total[a]
        values[2] = self.total[a] - self.scrap[a]
        values[3:] = self.values(a, seq)
        return {
            "asset": self.assets[a],
            "device": f"m{a:05d}",
            "seq": seq,
            "producer_id": "bench",
            "scan_time": scan_time_us,
            "tags": self.tags,
            "values": values,
        }
