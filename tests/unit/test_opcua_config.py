"""OPC UA settings in the one config model: devices as a discriminated union, clear errors, the example plant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from plantstream.core.config import (
    ConfigError,
    ModbusTcpDevice,
    OpcUaDevice,
    OpcUaSecurityMode,
    OpcUaSecurityPolicy,
    Settings,
    load_config,
)
from tests.conftest import REPO, plant_raw

pytestmark = pytest.mark.usefixtures("clean_env")

EXAMPLE = REPO / "docs" / "examples" / "opcua-plant.yaml"


def opcua_device(**kw: Any) -> dict[str, Any]:
    return {
        "name": "press1-opcua",
        "protocol": "opcua",
        "asset": "demo.springfield.stamping.line1.press1",
        "endpoint": "opc.tcp://127.0.0.1:4840/plant",
        "tags": [{"name": "temp", "node_id": "ns=2;s=press1.temp", "unit": "degC"}],
        **kw,
    }


def test_example_plant_loads_with_both_protocol_kinds_resolved() -> None:
    s = load_config(EXAMPLE)
    assert [type(d) for d in s.devices] == [OpcUaDevice, OpcUaDevice]
    first = s.devices[0]
    assert isinstance(first, OpcUaDevice)
    assert first.security_policy is OpcUaSecurityPolicy.BASIC256SHA256
    assert first.security_mode is OpcUaSecurityMode.SIGN_AND_ENCRYPT
    assert first.password is not None and "change-me" not in repr(first)  # a SecretStr, never printed
    second = s.devices[1]
    assert isinstance(second, OpcUaDevice) and second.mode == "polling"


def test_modbus_and_opcua_devices_live_side_by_side(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path)
    raw["devices"].append(opcua_device())
    s = Settings(**raw)
    kinds = {d.name: type(d) for d in s.devices}
    assert kinds["press1-opcua"] is OpcUaDevice and kinds["press1-plc"] is ModbusTcpDevice


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"endpoint": "http://x:1"}, "opc.tcp://host:port"),
        ({"security_policy": "Basic256Sha256"}, "security_policy and security_mode go together"),
        ({"security_mode": "Sign"}, "security_policy and security_mode go together"),
        ({"username": "op"}, "username and password together"),
        ({"mode": "push"}, "subscription"),
        ({"tags": [{"name": "t", "node_id": "press1.temp"}]}, "ns=<index>;<i|s|g|b>=<identifier>"),
        ({"tags": [{"name": "t", "node_id": "ns=2;i=5", "deadband_abs": 1, "deadband_pct": 2}]}, "not both"),
        ({"tags": [{"name": "t", "node_id": "ns=2;i=5"}, {"name": "t", "node_id": "ns=2;i=6"}]}, "appears twice"),
    ],
)
def test_bad_opcua_device_settings_get_clear_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = plant_raw(tmp_path)
    raw["devices"] = [opcua_device(**change)]
    with pytest.raises(ValidationError) as e:
        Settings(**raw)
    assert message in str(e.value)


def test_config_file_error_names_the_opcua_device_and_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["devices"][0]["queue_size"] = 0
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "devices[0](injection1-opcua).queue_size" in str(e.value)


def test_unknown_protocol_is_named(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path)
    raw["devices"] = [opcua_device(protocol="profinet")]
    with pytest.raises(ValidationError) as e:
        Settings(**raw)
    assert "'modbus_tcp', 'modbus_rtu', 'opcua'" in str(e.value)
