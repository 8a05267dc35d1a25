"""How often an asset reports, and how long a silence may last before its data counts as missing.

Contract: `expected_interval_s(settings, asset)` is the longest time the asset's devices promise
between two frames: the asset's `report_interval_s` when set, else the slowest of its devices (a
Modbus poll interval, or its report-by-exception heartbeat when every tag has a deadband; an OPC UA
publishing interval; an MQTT or Sparkplug frame period); None when a device promises nothing (every
tag behind a deadband without a heartbeat). `silence_us` is how long after the asset's last report
the last state still holds: `pipeline.windows.silence_after_intervals` expected intervals, at least
`silence_after_min_s`; None (no limit) when the interval is unknown. Beyond it there is no data: it
counts as neither production nor downtime (processors/oee.py) and the asset is offline (plant.state.v1).
"""

from __future__ import annotations

from plantstream.core.config import ModbusDevice, MqttDevice, OpcUaDevice, Settings, SparkplugDevice

US = 1_000_000


def _device_interval_s(d: object) -> float | None:
    if isinstance(d, ModbusDevice):
        # a tag without deadband or heartbeat is sent every poll; with report by exception only a
        # change or a due heartbeat sends a frame, so the shortest heartbeat bounds the silence
        if any(t.deadband_abs is None and t.deadband_pct is None and t.heartbeat_s is None for t in d.tags):
            return d.poll_interval_s
        beats = [t.heartbeat_s for t in d.tags if t.heartbeat_s is not None]
        return max(d.poll_interval_s, min(beats)) if beats else None
    if isinstance(d, OpcUaDevice):
        return d.publishing_interval_ms / 1000
    if isinstance(d, MqttDevice | SparkplugDevice):
        beats = [t.heartbeat_s for t in d.tags if t.heartbeat_s is not None]
        return max(d.frame_period_s, min(beats)) if beats else d.frame_period_s
    return None


def expected_interval_s(settings: Settings, asset: str) -> float | None:
    """Seconds between two frames of the asset at most (see the module doc); None when unknown."""
    try:
        a = settings.asset(asset)
    except KeyError:
        return None
    if a.report_interval_s is not None:
        return a.report_interval_s
    intervals = [_device_interval_s(d) for d in settings.devices if d.asset == asset]
    if not intervals or any(i is None for i in intervals):
        return None
    return max(i for i in intervals if i is not None)


def silence_us(settings: Settings, asset: str) -> int | None:
    """How long the last state holds after the asset's last report, µs; None: without limit."""
    interval = expected_interval_s(settings, asset)
    if interval is None:
        return None
    w = settings.pipeline.windows
    return int(max(w.silence_after_min_s, w.silence_after_intervals * interval) * US)
