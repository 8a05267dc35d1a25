"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Encoding and decoding use fastavro directly (schemaless) rather than confluent_kafka's
AvroSerializer: the bytes are the same, but the hot path then skips per-call context objects and
datetime conversion. Timestamps stay integer microseconds inside plantstream; registered schemas
keep their logical types so other clients (Kafka UI, confluent_kafka, Connect) see datetimes.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import schemas
from plantstream.core import logs
from plantstream.core.errors import CoreError
from plantstream.core.flat_codec import FlatEncodeError, flat_writer
from plantstream.core.frame_codec import ColumnarDecoder, ColumnarEncoder, FrameColumns

log = logs.get(__name__)

MAGIC = 0
HEADER = struct.Struct(">bI")


class DecodeError(CoreError, ValueError):
    """A message that is not a valid plantstream Avro record; the text says why."""


class RegistryUnavailable(CoreError, RuntimeError):
    pass


def _strip_logical(node: Any) -> Any:
    """Same encoding, but timestamps read and written as plain ints (no datetime objects)."""
    if isinstance(node, dict):
        return {k: _strip_logical(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical(v) for v in node]
    return node


def parse_internal(schema: dict[str, Any] | str, keep_logical: bool = False) -> Any:
    if isinstance(schema, str):
        schema = json.loads(schema)
    return fastavro.parse_schema(schema if keep_logical else _strip_logical(schema))


class Codec:
    """Encoder/decoder for one topic's value schema, bound to its registered id.

    ReadingFrames whose values are all floats are encoded from columns (plantstream/core/frame_codec.py):
    the same bytes as fastavro's, several times faster; flat records (the worker's outputs) are written by
    plantstream/core/flat_codec.py, the same bytes again; any other record goes through fastavro."""

    def __init__(self, name: str, schema_id: int) -> None:
        self.name = name
        self.schema_id = schema_id
        self.parsed = parse_internal(schemas.schema_json(name))
        self._header = HEADER.pack(MAGIC, schema_id)
        self._columnar = ColumnarEncoder() if name == schemas.READING_FRAME else None
        self._flat = flat_writer(self.parsed) if self._columnar is None else None

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._columnar is not None:
            body = self._columnar.encode_frame(record)
            if body is not None:
                return self._header + body
        elif self._flat is not None:
            try:
                return self._header + self._flat(record)
            except FlatEncodeError:
                pass  # fastavro writes it, or says what is wrong with it
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.parsed, record)
        return buf.getvalue()

    def encode_columns(self, **columns: Any) -> bytes:
        """A ReadingFrame from columns (ColumnarEncoder.encode_columns' arguments), with the header."""
        if self._columnar is None:
            raise TypeError(f"{self.name} is not a ReadingFrame codec")
        return self._header + self._columnar.encode_columns(**columns)


def split_header(data: bytes | None) -> tuple[int, memoryview]:
    if data is None:
        raise DecodeError("empty message (null value); a plantstream record was expected")
    if len(data) < HEADER.size + 1:
        raise DecodeError(f"message of {len(data)} bytes is too short for the Confluent wire format")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"magic byte {magic} is not 0: not Confluent-framed Avro")
    return schema_id, memoryview(data)[HEADER.size :]


class Decoder:
    """Decodes any registered schema id; resolves older writer schemas to the current reader schema."""

    def __init__(
        self, fetch_schema: Callable[[int], str], reader: str | None = None, keep_logical: bool = False
    ) -> None:
        self._fetch = fetch_schema
        self._keep_logical = keep_logical
        self._reader = parse_internal(schemas.schema_json(reader)) if reader else None
        # schema id -> (writer schema, reader schema or None when it is the writer's own)
        self._writers: dict[int, tuple[Any, Any]] = {}
        # frames written with the current ReadingFrame schema are read as columns where their layout is known
        self._columnar = ColumnarDecoder() if reader == schemas.READING_FRAME and not keep_logical else None

    def _schemas(self, schema_id: int) -> tuple[Any, Any]:
        known = self._writers.get(schema_id)
        if known is None:
            try:
                text = self._fetch(schema_id)
            except Exception as e:  # the registry says not found, or it is down
                raise DecodeError(f"schema id {schema_id} cannot be fetched from the registry: {e}") from e
            parsed = parse_internal(text, self._keep_logical)
            # fastavro compares writer and reader on every call to skip resolution when they are
            # equal: a tenth of the decoding time of a 20-sample frame, so decided once per id
            known = self._writers[schema_id] = (parsed, None if parsed == self._reader else self._reader)
        return known

    def decode(self, data: bytes | None) -> dict[str, Any]:
        got = self.decode_frame(data) if self._columnar is not None else self._decode(data)
        return dict(got.to_frame()) if isinstance(got, FrameColumns) else got

    def decode_frame(self, data: bytes | None) -> FrameColumns | dict[str, Any]:
        """A ReadingFrame as columns when its layout allows (see frame_codec), else as a dict.
        Only for a decoder made with reader schemas.READING_FRAME."""
        if self._columnar is None:
            raise TypeError("decode_frame needs a decoder of ReadingFrames (reader=schemas.READING_FRAME)")
        schema_id, body = split_header(data)
        _writer, resolve = self._schemas(schema_id)
        if resolve is not None:  # an older writer schema: resolved by fastavro
            return self._decode(data)
        cols = self._columnar.decode(body)
        if cols is not None:
            return cols
        record = self._decode(data)
        self._columnar.learn(body, record)
        return record

    def _decode(self, data: bytes | None) -> dict[str, Any]:
        schema_id, body = split_header(data)
        writer, reader = self._schemas(schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
        except Exception as e:  # fastavro raises many types for truncated or garbage bodies
            raise DecodeError(f"Avro body does not match schema id {schema_id}: {type(e).__name__}: {e}") from e
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id} does not describe a record")
        return record


def registry_client(url: str, username: str | None = None, password: str | None = None) -> SchemaRegistryClient:
    conf: dict[str, Any] = {"url": url}
    if username:
        conf["basic.auth.user.info"] = f"{username}:{password or ''}"
    return SchemaRegistryClient(conf)


class Registry:
    """plantstream's view of the schema registry: register its schemas, fetch writer schemas."""

    def __init__(self, client: SchemaRegistryClient, url: str) -> None:
        self.client = client
        self.url = url

    def register(self, subject: str, name: str, *, attempts: int | None = None) -> int:
        """Register (or look up) a schema. Retries with backoff while the registry is unreachable:
        forever by default (a service waits for its registry), `attempts` times for commands."""
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            try:
                schema_id: int = self.client.register_schema(subject, Schema(schemas.schema_text(name), "AVRO"))
                return schema_id
            except SchemaRegistryError:
                raise  # the registry answered: incompatible schema, auth... retrying will not help
            except Exception as e:  # connection refused, timeouts: the registry is (still) down
                message = (
                    f"schema registry at {self.url} is unreachable ({type(e).__name__}: {e}). Fix: start it "
                    "with `plantstream kafka start`, or set pipeline.registry.url / SCHEMA_REGISTRY_URL"
                )
                if attempts is not None and attempt >= attempts:
                    raise RegistryUnavailable(message) from e
                log.warning("%s; retrying in %.0fs", message, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def set_backward(self, subject: str) -> None:
        self.client.set_compatibility(subject_name=subject, level="BACKWARD")

    def fetch(self, schema_id: int) -> str:
        text = self.client.get_schema(schema_id).schema_str
        if not text:
            raise LookupError(f"the registry returned an empty schema for id {schema_id}")
        return text

    def codec(self, subject: str, name: str) -> Codec:
        return Codec(name, self.register(subject, name))

    def decoder(self, reader: str | None = None, keep_logical: bool = False) -> Decoder:
        return Decoder(self.fetch, reader, keep_logical)
