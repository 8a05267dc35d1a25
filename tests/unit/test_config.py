"""Config loading: the demo plant is valid; bad files fail naming file, field and fix; env overrides win."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from plantstream.cli import app
from plantstream.core.config import DEMO_CONFIG, ConfigError, load_config


def write(tmp_path: Path, raw: object) -> Path:
    p = tmp_path / "plant.yaml"
    p.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return p


def demo() -> dict:
    raw: dict = yaml.safe_load(DEMO_CONFIG.read_text())
    return raw


def test_demo_plant_loads(clean_env: None) -> None:
    s = load_config(DEMO_CONFIG)
    assert len(s.plant.assets) == 7
    assert {d.asset for d in s.devices} <= {a.path for a in s.plant.assets}
    assert s.pipeline.kafka.bootstrap is None
    # OPC UA is secured by default: SignAndEncrypt, no unsecured endpoint, a password-protected user
    opcua = [d for d in s.devices if d.protocol == "opcua"]
    assert opcua and all(d.security_mode.value == "SignAndEncrypt" and d.server_trust_dir for d in opcua)
    assert "None" not in s.pipeline.opcua_server.security_policies
    assert [m.value for m in s.pipeline.opcua_server.security_modes] == ["SignAndEncrypt"]
    assert s.pipeline.opcua_server.trust_dir and s.pipeline.opcua_server.users
    assert all(s.opcua_password(d) is not None for d in opcua)


def test_error_names_file_field_and_fix(tmp_path: Path, clean_env: None) -> None:
    raw = demo()
    raw["devices"][1]["tags"][2]["type"] = "float33"
    raw["devices"][0]["port"] = 70000
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert str(path) in text
    assert "devices[1](cnc1-controller).tags[2](spindle_temperature).type" in text
    assert "'float33'" in text and "float32" in text  # what was given and what is allowed
    assert "devices[0](press1-plc).port" in text and "65535" in text


def test_unknown_field_is_rejected_with_a_fix(tmp_path: Path, clean_env: None) -> None:
    raw = demo()
    raw["pipeline"]["kafka"]["bootstrap_servers"] = "x:1"
    with pytest.raises(ConfigError, match=r"pipeline\.kafka\.bootstrap_servers.*Fix: remove it"):
        load_config(write(tmp_path, raw))


def test_bad_asset_path_and_dangling_reference(tmp_path: Path, clean_env: None) -> None:
    raw = demo()
    raw["plant"]["assets"][0]["path"] = "press1"
    with pytest.raises(ConfigError, match="five dot-separated ISA-95 levels"):
        load_config(write(tmp_path, raw))
    raw = demo()
    raw["devices"][0]["asset"] = "demo.springfield.stamping.line1.press9"
    with pytest.raises(ConfigError, match=r"press9.*which plant\.assets does not declare"):
        load_config(write(tmp_path, raw))


def test_type_must_fit_the_register_table(tmp_path: Path, clean_env: None) -> None:
    raw = demo()
    raw["devices"][2]["tags"][4]["type"] = "float32"  # a coil
    with pytest.raises(ConfigError, match="coil holds one bit: set type: bool"):
        load_config(write(tmp_path, raw))


def test_yaml_syntax_error(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "plant: [unclosed"))


def test_missing_file(tmp_path: Path, clean_env: None) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.yaml")


def test_env_overrides_file(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "broker1:9092")
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__WINDOWS__KPI_WINDOW_S", "15")
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD", "s3cret")
    s = load_config(DEMO_CONFIG)
    assert s.pipeline.kafka.bootstrap == "broker1:9092"
    assert s.pipeline.windows.kpi_window_s == 15
    assert s.pipeline.kafka.sasl_password is not None
    assert s.pipeline.kafka.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
    assert len(s.devices) == 7  # the file's plant is still there under the override


def test_bad_env_value_is_reported(monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__WINDOWS__KPI_WINDOW_S", "soon")
    with pytest.raises(ConfigError, match=r"pipeline\.windows\.kpi_window_s"):
        load_config(DEMO_CONFIG)


def test_secret_from_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PLANTSTREAM_PIPELINE__KAFKA__SASL_PASSWORD").write_text("from-a-file")
    monkeypatch.setenv("PLANTSTREAM_SECRETS_DIR", str(secrets))
    s = load_config(DEMO_CONFIG)
    assert s.pipeline.kafka.sasl_password is not None
    assert s.pipeline.kafka.sasl_password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(s)
    assert s.pipeline.kafka.bootstrap is None  # the rest of the section still comes from the file


def test_opcua_passwords_of_the_demo_come_from_env_or_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    s = load_config(DEMO_CONFIG)
    filler = next(d for d in s.devices if d.protocol == "opcua")
    assert filler.password is None and filler.username == "operator"  # no password in the plant file's device
    default = s.opcua_password(filler)
    assert default is not None and default.get_secret_value() == "plantstream-demo"  # the documented demo default
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PLANTSTREAM_PIPELINE__OPCUA_SERVER__USERS__OPERATOR").write_text("server-side-file")
    monkeypatch.setenv("PLANTSTREAM_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__OPCUA_CLIENT__PASSWORDS__OPERATOR", "client-side-env")
    s = load_config(DEMO_CONFIG)
    filler = next(d for d in s.devices if d.protocol == "opcua")
    assert s.pipeline.opcua_server.users["operator"].get_secret_value() == "server-side-file"
    pw = s.opcua_password(filler)
    assert pw is not None and pw.get_secret_value() == "client-side-env"
    assert "client-side-env" not in repr(s) and "server-side-file" not in repr(s)


def test_opcua_username_without_any_password_names_the_secret(tmp_path: Path, clean_env: None) -> None:
    raw = demo()
    raw["pipeline"]["opcua_client"] = {"passwords": {}}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, raw))
    assert "filler1-opcua" in str(e.value) and "PLANTSTREAM_PIPELINE__OPCUA_CLIENT__PASSWORDS__OPERATOR" in str(e.value)


def test_check_config_cli_exit_codes(tmp_path: Path, clean_env: None) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check-config", str(DEMO_CONFIG)])
    assert ok.exit_code == 0 and "OK (7 assets, 7 devices" in ok.output
    raw = demo()
    raw["devices"][0]["tags"][0]["address"] = -1
    bad = runner.invoke(app, ["check-config", str(write(tmp_path, raw))])
    assert bad.exit_code == 2
    assert "tags[0](oil_temperature).address" in bad.output
