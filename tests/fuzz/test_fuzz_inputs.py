"""Property-based fuzzing of everything that parses outside input: no crash, only the clean error types.

Bounded (a few hundred examples each) so it runs in CI; raise PLANTSTREAM_FUZZ_EXAMPLES for a soak.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from plantstream.core.config import DEMO_CONFIG, ConfigError, ModbusTag, load_config
from plantstream.core.serde import Codec, DecodeError, Decoder
from producers import modbus_codec
from producers.replay import ReplayError, frames_from_batches, read_batches

EXAMPLES = int(os.environ.get("PLANTSTREAM_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

DECODER = Decoder(lambda _id: schemas.schema_text(schemas.READING_FRAME), schemas.READING_FRAME)
GOOD = Codec(schemas.READING_FRAME, 1).encode(
    {
        "asset": "a.b.c.d.e",
        "device": "d",
        "seq": 1,
        "producer_id": "p",
        "scan_time": 1,
        "historical": False,
        "buffered": False,
        "samples": [{"tag": "t", "source_time": 1, "value": 2.5, "quality": "GOOD", "unit": "bar"}],
    }
)


@fuzz
@given(st.binary(max_size=300))
def test_decoder_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODER.decode(data)


@fuzz
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, len(GOOD)))
def test_decoder_mutated_frames(pos: int, byte: int, cut: int) -> None:
    data = bytearray(GOOD)
    data[pos] = byte
    try:
        record = DECODER.decode(bytes(data[: max(cut, 6)]))
    except DecodeError:
        return
    assert isinstance(record, dict)


yaml_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=20)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@fuzz
@given(st.data())
def test_config_loader_mutations(data: st.DataObject) -> None:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    # replace one random node of the demo plant by random YAML
    node, path = raw, []
    for _ in range(data.draw(st.integers(1, 5))):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node, key=str)))
        elif isinstance(node, list) and node:
            key = data.draw(st.integers(0, len(node) - 1))
        else:
            break
        path.append((node, key))
        node = node[key]
    if path:
        parent, key = path[-1]
        parent[key] = data.draw(yaml_values)
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.yaml"
    target.write_text(yaml.safe_dump(raw))
    try:
        load_config(target)
    except ConfigError as e:
        assert str(target) in str(e)


@fuzz
@given(st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_config_loader_random_text(data: bytes) -> None:
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-text-{os.getpid()}.yaml"
    target.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(target)


TAGS = [
    ModbusTag(name="x", address=0, type=t, byte_order=o, length=3 if t.value == "string" else 0, scale=s)
    for t in modbus_codec.TagType
    for o in modbus_codec.ByteOrder
    for s in (1.0, 0.1)
    if t.value != "bool"
]


@fuzz
@given(st.sampled_from(TAGS), st.lists(st.integers(-10, 70000), max_size=6))
def test_modbus_decode_any_words(tag: ModbusTag, words: list[int]) -> None:
    with contextlib.suppress(ValueError):
        modbus_codec.decode(words, tag)


@fuzz
@given(
    st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=',\n\r"'), max_size=8),
            min_size=3,
            max_size=3,
        ),
        max_size=8,
    )
)
def test_replay_random_csv(rows: list[list[str]]) -> None:
    from plantstream.core.config import ReplaySource

    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-{os.getpid()}.csv"
    target.write_text("timestamp,a,b\n" + "".join(",".join(r) + "\n" for r in rows))
    src = ReplaySource(name="f", path=str(target), asset="a.b.c.d.e")
    try:
        for frame in frames_from_batches(src, read_batches(src), "fuzz"):
            assert frame["historical"]
    except ReplayError:
        pass
