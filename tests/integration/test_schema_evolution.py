"""The schemas issue 17 changed evolve with BACKWARD compatibility in the real registry: the previous version
(the same record without the new fields) is registered first, BACKWARD is set, the new version is accepted,
and a record written with the previous one reads with the new one, the new fields at their defaults. An
incompatible change (a new field without a default) is refused."""

from __future__ import annotations

import io
import json
import struct
import uuid
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import schemas
from plantstream.core.serde import Decoder
from tests.conftest import Stack

pytestmark = pytest.mark.integration

# schema -> the fields issue 17 added, and a record of the previous version
ADDED = {
    schemas.KPI_WINDOW: (("revision", "data_coverage"), {"asset": "a", "tag": "t", "window_start": 0, "window_end": 60,
                         "unit": "", "count": 1, "bad_count": 0, "min": 1.0, "max": 1.0, "mean": 1.0, "stddev": 0.0,
                         "first": 1.0, "last": 1.0, "first_time": 0, "last_time": 0, "time_weighted_avg": 1.0,
                         "rate_of_change": None}),
    schemas.OEE_WINDOW: (("revision", "data_coverage"), {"asset": "a", "window_start": 0, "window_end": 60, "shift": "",
                         "planned_busy_time_s": 60.0, "actual_production_time_s": 0.0, "produced_quantity": 0.0,
                         "good_quantity": 0.0, "scrap_quantity": 0.0, "availability": 0.0, "effectiveness": None,
                         "quality_ratio": None, "oee": None, "scrap_ratio": None, "failures": 0, "mtbf_s": None,
                         "mttr_s": None, "downtime_by_reason_s": {}}),
    schemas.ALERT: (("suppression",), {"alert_id": "i", "asset": "a", "rule": "r", "kind": "threshold",
                    "state": "RAISED", "severity": "INFO", "time": 1, "message": "m", "tags": [], "value": None}),
}  # fmt: skip
DEFAULTS = {"revision": 0, "data_coverage": None, "suppression": ""}


def previous(name: str) -> dict[str, Any]:
    s = schemas.schema_json(name)
    return {**s, "fields": [f for f in s["fields"] if f["name"] not in ADDED[name][0]]}


@pytest.mark.parametrize("name", sorted(ADDED))
def test_the_new_fields_evolve_backward(stack: Stack, name: str) -> None:
    client = SchemaRegistryClient({"url": stack.registry_url})
    subject = f"evolution-{uuid.uuid4().hex[:8]}-value"
    old = previous(name)
    old_id = client.register_schema(subject, Schema(json.dumps(old), "AVRO"))
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    new_id = client.register_schema(subject, Schema(schemas.schema_text(name), "AVRO"))
    assert new_id != old_id
    # a record the previous version wrote, read with the new reader schema: the new fields at their defaults
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), ADDED[name][1])
    wire = struct.pack(">bI", 0, old_id) + body.getvalue()
    got = Decoder(lambda i: client.get_schema(i).schema_str, name).decode(wire)
    assert got == {**ADDED[name][1], **{f: DEFAULTS[f] for f in ADDED[name][0]}}
    # a field without a default would break readers of the old data: refused
    broken = schemas.schema_json(name)
    broken["fields"] = [*broken["fields"], {"name": "must_have", "type": "long"}]
    with pytest.raises(SchemaRegistryError):
        client.register_schema(subject, Schema(json.dumps(broken), "AVRO"))
