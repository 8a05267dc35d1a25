"""Public labelled data sets for `plantstream bench anomaly`: where they are cached and how they get there.

No package registry serves them, so they live in a cache folder (default ~/.cache/plantstream/datasets, env
PLANTSTREAM_DATASETS), filled from the projects' own repositories by `plantstream bench anomaly --fetch` (git) or
by hand. Never committed. Layout:

    tennessee-eastman/d00.dat, d00_te.dat, d01.dat, d01_te.dat, ... d21_te.dat   (Braatz group's files)
    nab/data/realKnownCause/<series>.csv, nab/labels/combined_windows.json        (Numenta Anomaly Benchmark)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plantstream.core.errors import ToolError


class DatasetMissing(ToolError, RuntimeError):
    """A data set is not in the cache; the text says how to get it there."""


@dataclass(frozen=True)
class Dataset:
    name: str
    repository: str  # a git repository holding the files
    files: tuple[str, ...]  # paths inside the repository, copied to the same paths under the cache folder
    cite: str

    def missing(self, root: Path) -> list[str]:
        return [f for f in self.files if not (root / self.name / self.dest(f)).is_file()]

    def dest(self, repo_path: str) -> str:
        return repo_path


TE_FILES = tuple(f"d{k:02d}{suffix}.dat" for k in range(22) for suffix in ("", "_te"))
TENNESSEE_EASTMAN = Dataset(
    "tennessee-eastman",
    "https://github.com/camaramm/tennessee-eastman-profBraatz",
    TE_FILES,
    "Tennessee Eastman process data of Russell, Chiang and Braatz (University of Illinois, Braatz group): "
    "d00.dat normal training run (500 samples), dNN_te.dat test runs of 960 samples with fault NN from sample 161",
)
NAB_SERIES = (
    "realKnownCause/machine_temperature_system_failure.csv",
    "realKnownCause/ambient_temperature_system_failure.csv",
)
NAB = Dataset(
    "nab",
    "https://github.com/numenta/NAB",
    (*(f"data/{s}" for s in NAB_SERIES), "labels/combined_windows.json"),
    "Numenta Anomaly Benchmark (Lavin and Ahmad 2015), labelled windows labels/combined_windows.json",
)
DATASETS = {d.name: d for d in (TENNESSEE_EASTMAN, NAB)}


def cache_root() -> Path:
    return Path(os.environ.get("PLANTSTREAM_DATASETS") or Path.home() / ".cache" / "plantstream" / "datasets")


def require(ds: Dataset, root: Path | None = None) -> Path:
    """The data set's folder; DatasetMissing naming the files and the fix when any is absent."""
    root = root or cache_root()
    missing = ds.missing(root)
    if missing:
        raise DatasetMissing(
            f"data set {ds.name}: {len(missing)} file(s) missing under {root / ds.name} (e.g. {missing[0]}). Fix: "
            f"`plantstream bench anomaly --fetch` (needs git and access to {ds.repository}), or copy those files "
            f"from a clone of that repository there (or point PLANTSTREAM_DATASETS at a folder that has them)"
        )
    return root / ds.name


def fetch(ds: Dataset, root: Path | None = None) -> Path:
    """Fill the cache from the data set's repository with a shallow git clone; only the listed files are kept."""
    root = root or cache_root()
    if not ds.missing(root):
        return root / ds.name
    if shutil.which("git") is None:
        raise DatasetMissing(f"data set {ds.name}: fetching needs git on PATH. Fix: install git, or copy the files")
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "repo"
        done = subprocess.run(
            ["git", "clone", "--depth", "1", "--quiet", ds.repository, str(clone)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise DatasetMissing(f"data set {ds.name}: git clone {ds.repository} failed: {reason}")
        for f in ds.files:
            target = root / ds.name / ds.dest(f)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(clone / f, target)
    return require(ds, root)
