"""The simulator's labelled faults: which tags of which asset they may hit, the schedule, the ground truth.

The fault shapes and the schedule drawing are plantstream/simulators/faults.py's (an anomaly benchmark depends on
them); this module only maps them onto a configured plant. Each asset gets its own schedule seeded by
(seed, asset path), so adding an asset leaves the others' faults unchanged. Single-sensor faults hit
one numeric process value of the asset; a correlated fault (bearing wear, cavitation, clogged filter)
is scheduled only on assets that serve at least two of the signals it moves.

The ground truth is JSON lines, one fault per line in start order, times in simulated seconds since
the simulator started: the same seed and plant give a byte-identical file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from plantstream.core.config import COLLECTIVE_FAULT_KINDS, FAULT_KINDS, ModbusTag, SimulatorFaults, TagRole, TagType
from plantstream.simulators import faults
from plantstream.simulators.faults import Fault

_NOT_PROCESS_TYPES = (TagType.BOOL, TagType.STRING)
MIN_COLLECTIVE_TAGS = 2


def is_faultable(tag: ModbusTag) -> bool:
    """Process values carry faults; counters, states, setpoints and flags do not."""
    return tag.role is TagRole.PROCESS_VALUE and tag.type not in _NOT_PROCESS_TYPES


def asset_seed(seed: int, asset: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{asset}".encode()).digest()[:4], "big")


def kinds_for(tags: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The fault kinds that can show on an asset serving `tags`."""
    present = set(tags)
    out = []
    for kind in wanted or FAULT_KINDS:
        if kind in COLLECTIVE_FAULT_KINDS:
            moved = faults._COLLECTIVE_TAGS[kind]
            if sum(t in present for t in moved) < MIN_COLLECTIVE_TAGS:
                continue
        out.append(kind)
    return out


def make_plant_schedule(conf: SimulatorFaults, seed: int, asset_tags: Mapping[str, Sequence[str]]) -> list[Fault]:
    """Faults for every asset that has process values, in start order, trimmed to `conf.max_faults`."""
    out: list[Fault] = []
    for asset, tags in sorted(asset_tags.items()):
        kinds = kinds_for(tags, conf.kinds)
        if not tags or not kinds:
            continue
        schedule = faults.make_schedule(
            asset_seed(seed, asset),
            [asset],
            conf.hours,
            first_s=conf.first_s,
            gap_s=conf.gap_s,
            kinds=kinds,
            tags=list(tags),
        )
        # a correlated fault names all the signals it moves; keep only those this asset serves
        out += [
            Fault(f.asset, f.kind, f.start_s, f.end_s, tuple(t for t in f.tags if t in tags), f.sign) for f in schedule
        ]
    out.sort(key=lambda f: (f.start_s, f.asset))
    return out[: conf.max_faults] if conf.max_faults else out


def ground_truth_lines(schedule: Iterable[Fault], devices_of: Mapping[str, Sequence[str]]) -> list[str]:
    """One JSON object per fault: asset, devices, kind, tags, start_s, end_s (simulated s), sign."""
    lines = []
    for f in schedule:
        record = {
            "asset": f.asset,
            "devices": list(devices_of.get(f.asset, ())),
            "kind": f.kind,
            "tags": list(f.tags),
            "start_s": f.start_s,
            "end_s": f.end_s,
            "sign": f.sign,
        }
        lines.append(json.dumps(record, sort_keys=True))
    return lines


def write_ground_truth(path: Path, schedule: Iterable[Fault], devices_of: Mapping[str, Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in ground_truth_lines(schedule, devices_of)), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


def read_ground_truth(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
