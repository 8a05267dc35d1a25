"""`plantstream produce sparkplug --discover`: births of an edge node that was up before we listened
(we ask it for a rebirth when its data arrives) printed as device config. mosquitto only, no Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from plantstream.core.config import Settings
from plantstream.stack.mosquitto import Mosquitto
from producers.readers.sparkplug import discover
from tests.conftest import free_port
from tests.sparkplug_edge import Metric, TahuEdge
from tests.sparkplug_edge import T as DT

pytestmark = [pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(60)]


async def test_discover_prints_births_as_config(tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port, persistence=False)
    broker.start()
    edge = TahuEdge(
        port,
        "Plant1",
        "Line6",
        node_metrics=[Metric("Process/Temp", 1, DT.Double, 61.5, unit="degC")],
        devices={"Filler2": [Metric("Tank/Level", 10, DT.Float, 0.5, unit="m"), Metric("Speed", 11, DT.Int16, 3)]},
    )
    try:
        edge.connect()  # its births go out before we listen
        settings = Settings(
            plant={"assets": [{"path": "a.b.c.d.e"}]},
            pipeline={"state_dir": str(tmp_path), "mqtt": {"local_port": port}},
        )
        task = asyncio.ensure_future(discover(settings, "local", 2.5, "Plant1"))
        for _ in range(15):
            await asyncio.sleep(0.15)
            edge.data("Filler2", [(11, DT.Int16, 4)])  # data before a birth we saw: we ask for a rebirth
        text = await task
    finally:
        edge.close()
        broker.stop()
    assert edge.rebirths >= 1
    devices = {d["name"]: d for d in yaml.safe_load(text)["devices"]}
    assert set(devices) == {"Line6", "Line6-Filler2"}
    filler = devices["Line6-Filler2"]
    assert (filler["group_id"], filler["edge_node_id"], filler["device_id"]) == ("Plant1", "Line6", "Filler2")
    assert filler["tags"] == [
        {"name": "Speed", "type": "int16"},
        {"name": "Tank.Level", "metric": "Tank/Level", "type": "float32", "unit": "m"},
    ]
    node_tags = devices["Line6"]["tags"]  # Node Control/Rebirth and bdSeq are no tags
    assert node_tags == [{"name": "Process.Temp", "metric": "Process/Temp", "type": "float64", "unit": "degC"}]
