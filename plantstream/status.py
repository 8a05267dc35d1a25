"""`plantstream status`: topics, partitions, end offsets, message rates, lag per consumer group, each
stage's state, rate and lag, and a worker's anomaly models by state (the numbers come from
plantstream.core.pipeline_status, as the dashboard's)."""

from __future__ import annotations

from typing import Any

from plantstream.core.pipeline_status import collect

__all__ = ["collect", "render"]


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(snapshot: dict[str, Any]) -> str:
    lines = [f"Kafka {snapshot['bootstrap']}", "", f"{'topic':<40} {'parts':>5} {'messages':>12} {'msg/s':>9}"]
    for t in snapshot["topics"]:
        lines.append(f"{t['name']:<40} {t['partitions']:>5} {t['messages']:>12} {t['rate_per_s']:>9.1f}")
    lines += ["", f"{'consumer group':<40} {'topic':<32} {'lag':>8}"]
    for g in snapshot["groups"]:
        for topic, lag in sorted(g["lag"].items()) or [("-", 0)]:
            lines.append(f"{g['group']:<40} {topic:<32} {lag:>8}")
    if snapshot.get("stages"):
        lines += ["", f"{'stage':<24} {'state':<8} {'rate':>10} {'per second of':<16} {'lag':>8} {'buffered':>9}"]
        for st in snapshot["stages"]:
            lines.append(
                f"{st['component']:<24} {st['state']:<8} {_num(st['rate_per_s']):>10} {st['rate_name']:<16} "
                f"{_num(st['lag'], '{}'):>8} {_num(st['buffered'], '{}'):>9}"
            )
        for st in snapshot["stages"]:
            models = st.get("anomaly_models")
            if models:
                lines.append(
                    f"{st['component']}: anomaly models {models.get('ready', 0)} ready, "
                    f"{models.get('warming_up', 0)} warming up (one warming up flags no anomaly)"
                )
    return "\n".join(lines)
