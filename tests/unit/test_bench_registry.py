"""`plantstream bench`: one command per registered benchmark, built from its entry by one body."""

from __future__ import annotations

import importlib

import pytest
from typer.testing import CliRunner

from plantstream.bench.registry import BENCHMARKS
from plantstream.cli import app

runner = CliRunner()


@pytest.mark.parametrize("b", BENCHMARKS, ids=lambda b: b.name)
def test_every_benchmark_is_a_command_with_its_options(b: object) -> None:
    from plantstream.bench.registry import Benchmark

    assert isinstance(b, Benchmark)
    module = importlib.import_module(b.module)
    if b.render:
        assert callable(getattr(module, b.render))
    out = runner.invoke(app, ["bench", b.name, "--help"], terminal_width=200)
    assert out.exit_code == 0, out.output
    for o in b.options:
        assert f"--{o.name.replace('_', '-')}" in out.output
    assert "--json-out" in out.output


def test_bad_options_exit_2_with_the_problem_and_run_nothing() -> None:
    out = runner.invoke(app, ["bench", "alerts", "--tags", "2"])
    assert out.exit_code == 2 and "need --assets >= 1, --tags >= 4" in out.output
    out = runner.invoke(app, ["bench", "anomaly", "--dataset", "nope"])
    assert out.exit_code == 2 and "--dataset 'nope'" in out.output


def test_names_are_unique() -> None:
    names = [b.name for b in BENCHMARKS]
    assert len(names) == len(set(names))


def test_the_bench_commands_in_the_docs_name_real_options() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    by_name = {b.name: {f"--{o.name.replace('_', '-')}" for o in b.options} | {"--json-out"} for b in BENCHMARKS}
    found = 0
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for name, args in re.findall(r"plantstream bench ([a-z-]+)((?: --[a-z-]+(?: [^\s`|)]+)?)*)", doc.read_text()):
            assert name in by_name, f"{doc.name}: plantstream bench {name} is no benchmark"
            flags = set(re.findall(r"--[a-z-]+", args))
            assert flags <= by_name[name], f"{doc.name}: bench {name} {args}: unknown {flags - by_name[name]}"
            found += 1
    assert found >= 10
