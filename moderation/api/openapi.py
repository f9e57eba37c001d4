"""The API's OpenAPI 3 schema, written by hand: Django without DRF has no well-kept generator
(drf-spectacular and drf-yasg need DRF; django-ninja would replace the views). A test checks
that its paths and methods are exactly the URLconf's under ``/api/``.
"""

from __future__ import annotations

from typing import Any

from moderation import signals

_SIGNAL_TYPE = {"type": "string", "example": "pdq"}
_SIGNAL_TYPES = "pdq, md5, sha256 or dhash (also video_md5, video_sha256)"
_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]+$"}
_EXAMPLE_PDQ = "facd8bcb2a49bcebdec1985298d5fe84bcd006c187c598c720c3c087b3fdb318"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


_AUTH_ERRORS = {
    "401": _error("Missing, unknown or revoked token"),
    "405": _error("Method not allowed (the Allow header lists the methods)"),
    "429": {
        **_error("The token's rate limit is reached"),
        "headers": {
            "Retry-After": {
                "description": "Seconds until the window ends",
                "schema": {"type": "integer"},
            }
        },
    },
}
_DECISION_HEADER = {
    "X-Moderation-Decision": {
        "description": "What an upload with these signals gets: block, review or pass",
        "schema": {"type": "string", "enum": ["block", "review", "pass"]},
    }
}


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_BANKS = _query("banks", "Comma-separated list names: keep only their matches")
_QUALITY = _query(
    "quality",
    "PDQ quality of the queried hash, if known: below 50 a match reviews instead of blocking",
    type="integer",
    minimum=0,
    maximum=100,
)
_SIGNAL_PARAMS = [
    _query(
        "signal_type", f"The hash's signal type: {_SIGNAL_TYPES}", required=True, **_SIGNAL_TYPE
    ),
    _query("signal", "The hash, hex", required=True, **_HEX),
]
_FILE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["photo"],
                "properties": {
                    "photo": {
                        "type": "string",
                        "format": "binary",
                        "description": "One JPEG, PNG, GIF or WebP image",
                    }
                },
            }
        }
    },
}
_FILE_ERRORS = {
    "400": _error("No file, several files, a field other than photo, or not an acceptable image"),
    "413": _error("The file (or the request) is larger than the limit"),
}


def schema(server_url: str = "/api") -> dict[str, Any]:
    """The OpenAPI 3.0 document, with ``server_url`` as the base of every path."""
    signal_hashes = {
        "type": "object",
        "properties": dict.fromkeys(signals.SIGNAL_TYPES, _HEX),
        "example": {"pdq": _EXAMPLE_PDQ},
    }
    bank_matches = {
        "type": "object",
        "description": "List (bank) name -> its matches; shadow-mode lists are left out",
        "additionalProperties": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Match"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Moderation lookup API",
            "version": "1",
            "description": (
                "Hash images and look hashes up in this site's hash lists and banned set, "
                "in the shapes of hasher-matcher-actioner's API. Every route but this schema "
                "needs 'Authorization: Bearer <token>'. See docs/api.md."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                },
                "Match": {
                    "type": "object",
                    "required": ["bank_content_id", "distance"],
                    "properties": {
                        "bank_content_id": {
                            "type": "integer",
                            "description": "The list entry (pdq, md5, sha256) or flag (dhash)",
                        },
                        "distance": {"type": "string", "description": "Bits (0 for md5/sha256)"},
                        "bank": {"type": "string", "description": "The list's name"},
                        "outcome": {"type": "string", "enum": ["block", "review", "shadow"]},
                    },
                },
            },
        },
        "paths": {
            "/openapi.json": {
                "get": {
                    "summary": "This schema",
                    "security": [],
                    "responses": {"200": _json("The OpenAPI document", {"type": "object"})},
                }
            },
            "/h/hash": {
                "post": {
                    "tags": ["Hashing"],
                    "summary": "Hash an uploaded image",
                    "parameters": [
                        _query("types", "Comma-separated signal types to return (default: all)")
                    ],
                    "requestBody": _FILE_BODY,
                    "responses": {
                        "200": _json("Signal type -> hash", signal_hashes),
                        **_FILE_ERRORS,
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/m/raw_lookup": {
                "get": {
                    "tags": ["Matching"],
                    "summary": "Raw lookup of one hash",
                    "parameters": [
                        *_SIGNAL_PARAMS,
                        _query("include_distance", "Matches as objects", type="boolean"),
                        _BANKS,
                        _QUALITY,
                    ],
                    "responses": {
                        "200": _json(
                            "The matches: ids, or objects with include_distance",
                            {
                                "type": "object",
                                "properties": {
                                    "matches": {
                                        "type": "array",
                                        "items": {
                                            "oneOf": [
                                                {"type": "integer"},
                                                {"$ref": "#/components/schemas/Match"},
                                            ]
                                        },
                                    }
                                },
                            },
                        ),
                        "400": _error("Unknown signal type or malformed hash (the message says)"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/m/lookup": {
                "get": {
                    "tags": ["Matching"],
                    "summary": "Look up one hash, as an upload's signals would be",
                    "parameters": [*_SIGNAL_PARAMS, _BANKS, _QUALITY],
                    "responses": {
                        "200": _json("Matches by list", bank_matches, headers=_DECISION_HEADER),
                        "400": _error("Unknown signal type, malformed hash, or a url parameter"),
                        **_AUTH_ERRORS,
                    },
                },
                "post": {
                    "tags": ["Matching"],
                    "summary": "Look up an uploaded image: the decision an upload of it gets",
                    "parameters": [_BANKS],
                    "requestBody": _FILE_BODY,
                    "responses": {
                        "200": _json(
                            "Signal type -> matches by list",
                            {"type": "object", "additionalProperties": bank_matches},
                            headers=_DECISION_HEADER,
                        ),
                        **_FILE_ERRORS,
                        **_AUTH_ERRORS,
                    },
                },
            },
            "/m/compare": {
                "post": {
                    "tags": ["Matching"],
                    "summary": "Compare pairs of hashes",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "minItems": 2,
                                        "maxItems": 2,
                                    },
                                    "example": {"pdq": [_EXAMPLE_PDQ, _EXAMPLE_PDQ]},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "Signal type -> [match, {distance}]",
                            {
                                "type": "object",
                                "additionalProperties": {"type": "array"},
                                "example": {"pdq": [True, {"distance": 9}]},
                            },
                        ),
                        "400": _error("Not a dict of pairs, unknown signal type, bad hash"),
                        **_AUTH_ERRORS,
                    },
                }
            },
            "/m/index/status": {
                "get": {
                    "tags": ["Matching"],
                    "summary": "What each signal type's index holds",
                    "parameters": [
                        _query("signal_type", f"Only this type: {_SIGNAL_TYPES}", **_SIGNAL_TYPE)
                    ],
                    "responses": {
                        "200": _json(
                            "Signal type -> status",
                            {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "properties": {
                                        "present": {"type": "boolean"},
                                        "built_to": {
                                            "type": "integer",
                                            "description": "Unix time of the last change, -1",
                                        },
                                        "size": {"type": "integer"},
                                    },
                                },
                            },
                        ),
                        "400": _error("Unknown signal type"),
                        **_AUTH_ERRORS,
                    },
                }
            },
        },
    }
