"""The anomaly model on the Numenta Anomaly Benchmark's industrial series, scored with NAB's own standard profile.

Protocol (NAB's): each series is fed once, in order, online; a detection in the first 15 % of a file (at most 750
rows) is not scored (probation). Our detections are the *onsets* of the model's alarms (an alert raised), with
its defaults. NAB scoring (nab/sweeper.py, re-implemented here and checked against NAB's published per-file scores
of its detectors, which it reproduces to 4 decimals): a window's first detection earns a sigmoid of how early it
came (1 at the window's start, 0 at its end), a window without detection costs 1 (fnWeight), each detection
outside any window costs 0.11 (fpWeight) times a sigmoid of its distance past the last window. Normalised per file
as NAB does per corpus: 100 x (score - null) / (perfect - null), null = no detection, perfect = each window
detected at its start.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plantstream.bench.datasets import NAB, NAB_SERIES, require
from plantstream.core.config import AnomalySettings
from processors.anomaly.model import AnomalyStage

STANDARD = {"tp": 1.0, "fn": 1.0, "fp": 0.11}  # NAB config/profiles.json, "standard"
PROBATION = 0.15
# NAB's published standard-profile scores of its detectors on these files (results/<detector>/<detector>_standard_
# scores.csv in the NAB repository, corpus-optimised thresholds; the scorer above reproduces every one of them)
PUBLISHED: dict[str, dict[str, float]] = {
    "realKnownCause/machine_temperature_system_failure.csv": {
        "ARTime": 2.5563,
        "numentaTM": 1.5844,
        "earthgeckoSkyline": 1.3999,
        "numenta (HTM)": 1.3601,
        "htmjava": 0.5081,
        "contextOSE": -0.165,
        "twitterADVec": -0.2372,
        "relativeEntropy": -0.9161,
        "randomCutForest": -2.1186,
        "skyline": -2.1331,
        "knncad": -2.8564,
        "expose": -3.1073,
        "bayesChangePt": -3.3199,
        "windowedGaussian": -4.0,
    },
    "realKnownCause/ambient_temperature_system_failure.csv": {
        "randomCutForest": 1.7622,
        "earthgeckoSkyline": 1.7311,
        "ARTime": 1.6577,
        "htmjava": 1.337,
        "numentaTM": 1.1098,
        "contextOSE": -0.3186,
        "numenta (HTM)": -0.7586,
        "knncad": -0.7676,
        "relativeEntropy": -1.3998,
        "windowedGaussian": -2.0,
        "twitterADVec": -2.0,
        "skyline": -2.0,
        "bayesChangePt": -2.0,
        "expose": -2.0,
    },
}


def _sigmoid_score(position: float) -> float:
    """NAB's scaled sigmoid: ~1 at position -1 (a window's left edge), 0 at its right edge, -1 far past it."""
    return -1.0 if position > 3.0 else 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def nab_score(
    detections: Sequence[bool], windows: Sequence[tuple[int, int]], profile: dict[str, float] = STANDARD
) -> float:
    """NAB's raw score of per-row binary detections, windows as inclusive row index ranges, in time order."""
    n = len(detections)
    probation = min(math.floor(PROBATION * n), PROBATION * 5000)
    max_tp = _sigmoid_score(-1.0)
    per_window = [-profile["fn"]] * len(windows)
    false_pos = 0.0
    nxt, cur, prev_right, prev_width = 0, -1, -1, 0
    for i, hit in enumerate(detections):
        if cur < 0 and nxt < len(windows) and i == windows[nxt][0]:
            cur, nxt = nxt, nxt + 1
        if hit and i >= probation:
            if cur >= 0:
                left, right = windows[cur]
                s = _sigmoid_score(-(right - i + 1) / (right - left + 1)) * profile["tp"] / max_tp
                per_window[cur] = max(per_window[cur], s)
            elif prev_right < 0:
                false_pos -= profile["fp"]
            else:
                false_pos += _sigmoid_score(abs(prev_right - i) / (prev_width - 1)) * profile["fp"]
        if cur >= 0 and i == windows[cur][1]:
            prev_right, prev_width = i, windows[cur][1] - windows[cur][0] + 1
            cur = -1
    return sum(per_window) + false_pos


def normalised(raw: float, n_windows: int, profile: dict[str, float] = STANDARD) -> float:
    null, perfect = -profile["fn"] * n_windows, profile["tp"] * n_windows
    return round(100.0 * (raw - null) / (perfect - null), 1)


def load_series(root: Path, rel: str) -> tuple[list[str], list[float], list[tuple[int, int]]]:
    """(timestamps, values, windows as row ranges) of one NAB series."""
    times: list[str] = []
    values: list[float] = []
    with open(root / "data" / rel, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for t, v in rows:
            times.append(t)
            values.append(float(v))
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    index = {t: i for i, t in enumerate(times)}
    windows = [(index[a[:19]], index[b[:19]]) for a, b in labels[rel]]
    return times, values, windows


def alarm_onsets(times: Sequence[str], values: Sequence[float], cfg: AnomalySettings) -> list[bool]:
    """Feed the series through `AnomalyStage.score` as a one-tag asset; True where an alarm starts."""
    stage = AnomalyStage(overrides={"nab": cfg})
    onsets, before = [], False
    for t, v in zip(times, values, strict=True):
        us = int(datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp() * 1_000_000)
        rec = stage.score("nab", {"asset": "nab", "scan_time": us, "samples": [{"tag": "value", "value": v}]})
        now = bool(rec and rec["is_anomaly"])
        onsets.append(now and not before)
        before = now
    return onsets


def run(root: Path | None = None, series: Sequence[str] = NAB_SERIES, cfg: AnomalySettings | None = None) -> dict:
    root = root or require(NAB)
    cfg = cfg or AnomalySettings()
    files: dict[str, Any] = {}
    total_raw = total_windows = 0.0
    for rel in series:
        times, values, windows = load_series(root, rel)
        onsets = alarm_onsets(times, values, cfg)
        raw = nab_score(onsets, windows)
        total_raw += raw
        total_windows += len(windows)
        published = PUBLISHED.get(rel, {})
        files[rel] = {
            "rows": len(times),
            "windows": len(windows),
            "detections": sum(onsets),
            "raw_score": round(raw, 4),
            "normalised": normalised(raw, len(windows)),
            "published_normalised": {k: normalised(v, len(windows)) for k, v in published.items()},
            "rank_among_published": 1 + sum(1 for v in published.values() if v > raw),
        }
    return {
        "protocol": "NAB standard profile, online, probation 15 %, detections = alarm onsets, default settings",
        "settings": cfg.model_dump(),
        "files": files,
        "normalised_over_files": normalised(total_raw, int(total_windows)),
    }
