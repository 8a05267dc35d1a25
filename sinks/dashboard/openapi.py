"""The read API's OpenAPI 3.1 document, its record schemas made from the Avro contracts (schemas/*.avsc),
so the document and the topics never disagree. Served at GET /api/v1/openapi.json.

Timestamps are integers, UTC microseconds since the epoch, as on the topics and in the rest of the API.
"""

from __future__ import annotations

from typing import Any

import schemas

PRIMITIVE = {
    "string": {"type": "string"},
    "long": {"type": "integer"},
    "int": {"type": "integer"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
}


def _json_schema(avro: Any, named: dict[str, Any]) -> dict[str, Any]:
    """One Avro type as JSON Schema (2020-12, as OpenAPI 3.1 uses); named records go to `named`."""
    if isinstance(avro, str):
        if avro in PRIMITIVE:
            return dict(PRIMITIVE[avro])
        return {"$ref": f"#/components/schemas/{avro.rsplit('.', 1)[-1]}"}
    if isinstance(avro, list):
        return {"anyOf": [_json_schema(a, named) for a in avro]}
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-micros":
        return {"type": "integer", "description": "UTC microseconds since the epoch"}
    if kind == "record":
        name = avro["name"]
        if name not in named:
            named[name] = {}  # placeholder: a record refers to itself only by name
            named[name] = {
                "type": "object",
                "description": avro.get("doc", ""),
                "properties": {
                    f["name"]: {**_json_schema(f["type"], named), "description": f.get("doc", "")}
                    for f in avro["fields"]
                },
                "required": [f["name"] for f in avro["fields"] if "default" not in f],
            }
        return {"$ref": f"#/components/schemas/{name}"}
    if kind == "enum":
        return {"type": "string", "enum": list(avro["symbols"])}
    if kind == "array":
        return {"type": "array", "items": _json_schema(avro["items"], named)}
    if kind == "map":
        return {"type": "object", "additionalProperties": _json_schema(avro["values"], named)}
    return _json_schema(kind, named)


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "bad request (the reason is in `error`)",
        401: "not signed in: sign in on /login, or send `Authorization: Bearer <token>`",
        403: "the caller's role may not do this",
        404: "no such asset, or no state of it on plant.state.v1 yet",
        409: "the worker refused the command (the reason is in `error`)",
        503: "Kafka did not take the command",
        504: "no worker answered in time; the command is applied when one reads it",
    }
    return {str(c): _ok(ERROR, what[c]) for c in codes}


def document() -> dict[str, Any]:
    named: dict[str, Any] = {}
    for name in (schemas.ASSET_STATE, schemas.ALARM_STATE, schemas.ALARM_EVENT):
        _json_schema(schemas.schema_json(name), named)
    named["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string", "description": "what went wrong and how to fix it"}},
        "required": ["error"],
    }
    named["AlarmFigures"] = {
        "type": "object",
        "description": "ISA-18.2 alarm-management figures over the plant's alarms (plantstream.core.alarm_figures)",
        "properties": {
            "per_10min": {"type": "integer", "description": "activations in the last 10 minutes"},
            "avg_per_10min_24h": {"type": "number", "description": "average activations per 10 minutes, 24 h"},
            "flood_share_24h": {"type": "number", "description": "share of 10-minute periods with more than 10"},
            "standing": {"type": "integer", "description": "alarms whose condition is present"},
            "stale": {"type": "integer", "description": "standing for more than 24 hours"},
            "most_frequent": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "alarm": {"type": "string"},
                        "activations": {"type": "integer"},
                        "share": {"type": "number"},
                    },
                    "required": ["alarm", "activations", "share"],
                },
            },
            "chattering": {"type": "array", "items": {"type": "string"}, "description": "3+ activations in 1 min"},
            "shelved": {"type": "integer"},
            "suppressed": {"type": "integer"},
            "out_of_service": {"type": "integer"},
            "activations_24h": {"type": "integer"},
        },
        "required": ["per_10min", "standing", "most_frequent", "chattering"],
    }
    named["AlarmCommandRequest"] = {
        "type": "object",
        "properties": {
            "asset": {"type": "string", "description": "ISA-95 asset path"},
            "rule": {"type": "string", "description": "the alarm: an alert rule of the asset"},
            "action": {
                "type": "string",
                "enum": ["ACKNOWLEDGE", "SHELVE", "UNSHELVE", "REMOVE_FROM_SERVICE", "RETURN_TO_SERVICE"],
            },
            "comment": {"type": "string"},
            "duration_s": {"type": "number", "description": "SHELVE: how long, seconds"},
            "alert_id": {"type": "string", "description": "ACKNOWLEDGE: the incident the user saw"},
        },
        "required": ["asset", "rule", "action"],
    }
    ref = {k: {"$ref": f"#/components/schemas/{k}"} for k in named}
    asset_path = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "plantstream read API",
            "version": "1",
            "description": "The plant's live model (plant.state.v1) and its alarms (plant.alarm-state.v1), as the "
            "dashboard reads them from Kafka, and operator commands on alarms (plant.alarm-commands.v1).",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/api/v1/assets": {
                "get": {
                    "summary": "Every asset's latest state",
                    "parameters": [
                        {
                            "name": "prefix",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "only assets whose path starts with it (an ISA-95 subtree)",
                        }
                    ],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {"assets": {"type": "array", "items": ref["AssetState"]}},
                                "required": ["assets"],
                            },
                            "the assets' states, by path",
                        ),
                        **_errors(401),
                    },
                }
            },
            "/api/v1/assets/{path}": {
                "get": {
                    "summary": "One asset's latest state and its alarms",
                    "parameters": [asset_path],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "asset": ref["AssetState"],
                                    "alarms": {"type": "array", "items": ref["AlarmState"]},
                                },
                                "required": ["asset", "alarms"],
                            },
                            "the asset's state",
                        ),
                        **_errors(401, 404),
                    },
                }
            },
            "/api/v1/alarms": {
                "get": {
                    "summary": "Every alarm's lifecycle state, and the ISA-18.2 figures",
                    "parameters": [{"name": "asset", "in": "query", "required": False, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {
                                    "alarms": {"type": "array", "items": ref["AlarmState"]},
                                    "figures": ref["AlarmFigures"],
                                },
                                "required": ["alarms", "figures"],
                            },
                            "the alarms",
                        ),
                        **_errors(401),
                    },
                }
            },
            "/api/v1/alarm-commands": {
                "post": {
                    "summary": "Acknowledge, shelve, unshelve, remove from or return to service one alarm",
                    "description": "Sent as an AlarmCommand for the caller as authenticated; answered by the worker "
                    "that owns the asset.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref["AlarmCommandRequest"]}},
                    },
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "properties": {"event": ref["AlarmEvent"], "state": {"type": "string"}},
                                "required": ["event", "state"],
                            },
                            "applied: the transition",
                        ),
                        **_errors(400, 401, 403, 404, 409, 503, 504),
                    },
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _ok({"type": "object"}, "OpenAPI 3.1")}}
            },
        },
        "components": {
            "schemas": named,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "pipeline.dashboard.token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "plantstream_session"},
            },
        },
    }
