"""The OpenAPI 3.1 document of ``/api/v1``, served at ``GET /api/v1/openapi.json``.

Written by hand; a test compares its paths and methods with the routes the daemon
mounts, and a hypothesis run fuzzes every operation in it (no 5xx, no uncaught error).
"""

from __future__ import annotations

from typing import Any

_ROOM = {
    "name": "room",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_PROJECT = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
}
_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "Only log lines with a greater seq (0 to 2^63-1).",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
_TOKEN = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "The bearer token, for EventSource clients that cannot send headers.",
    "schema": {"type": "string"},
}
_ERROR = {
    "description": "What is wrong, in words.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_SSE = {"description": "A server-sent event stream.", "content": {"text/event-stream": {}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MESSAGE = {
    "type": "object",
    "required": ["seq", "role", "sender", "text", "ts"],
    "properties": {
        "seq": {"type": "integer"},
        "role": {"enum": ["user", "bot"]},
        "sender": {"type": "string"},
        "text": {"type": "string"},
        "ts": {"type": "number"},
    },
}
_SENDER = {
    "type": "string",
    "maxLength": 128,
    "description": "Display name; required without [transports.web] users, "
    "ignored with them (the token names the sender).",
}
_POST = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "sender": _SENDER,
        "text": {"type": "string", "minLength": 1},
        "id": {"type": "string", "minLength": 1, "maxLength": 128},
    },
}
_TYPING = {
    "type": "object",
    "required": ["typing"],
    "properties": {
        "sender": _SENDER,
        "typing": {"type": "boolean", "description": "true while typing, false once stopped"},
    },
}
_ITEM = {
    "type": "object",
    "properties": {
        "number": {"type": "integer"},
        "kind": {"type": "string"},
        "title": {"type": "string"},
        "stage": {"type": "string"},
        "column": {"type": "string"},
        "badge": {"type": "string"},
        "depends_on": {"type": "array", "items": {"type": "integer"}},
        "agent": {
            "type": ["object", "null"],
            "description": "The item's agent: state, profile, started, turns, cost_usd,"
            " last (unix time of its last report), attempts, reason; null when none.",
        },
    },
}
_NUMBER = {
    "name": "n",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999},
}
_DAYS = {
    "name": "days",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 90},
}
_REFUSALS = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "421": _ERROR}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "musher", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{}, {"bearer": []}],
    "paths": {
        "/api/v1/openapi.json": {
            "get": {"summary": "This document.", "responses": {"200": _json("OpenAPI", {})}}
        },
        "/api/v1/rooms/{room}/messages": {
            "parameters": [_ROOM],
            "post": {
                "summary": "Post a message to a web room (a command or free text).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _POST}},
                },
                "responses": {
                    "202": _json("Accepted", {"type": "object"}),
                    "200": _json("A duplicate id", {"type": "object"}),
                    "413": _ERROR,
                    "415": _ERROR,
                    **_REFUSALS,
                },
            },
            "get": {
                "summary": "The room's log after a seq.",
                "parameters": [_AFTER],
                "responses": {
                    "200": _json(
                        "The log",
                        {
                            "type": "object",
                            "properties": {
                                "messages": {"type": "array", "items": _MESSAGE},
                                "next": {"type": "integer"},
                            },
                        },
                    ),
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/rooms/{room}/typing": {
            "parameters": [_ROOM],
            "post": {
                "summary": "The page's person is typing (for about 6 s) or stopped: a batch "
                "of their messages waits for them (D1).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _TYPING}},
                },
                "responses": {
                    "202": _json("Noted", {"type": "object"}),
                    "413": _ERROR,
                    "415": _ERROR,
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/rooms/{room}/events": {
            "parameters": [_ROOM],
            "get": {
                "summary": "The room's log and typing as SSE (`message`, `typing`).",
                "parameters": [
                    _AFTER,
                    _TOKEN,
                    {"name": "Last-Event-ID", "in": "header", "schema": _AFTER["schema"]},
                ],
                "responses": {"200": _SSE, "429": _ERROR, **_REFUSALS},
            },
        },
        "/api/v1/rooms/{room}/project": {
            "parameters": [_ROOM],
            "get": {
                "summary": "The project the room works on.",
                "responses": {
                    "200": _json(
                        "Project", {"properties": {"project": {"type": ["string", "null"]}}}
                    ),
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/projects": {
            "get": {
                "summary": "Every project.",
                "responses": {"200": _json("Projects", {"type": "object"}), **_REFUSALS},
            }
        },
        "/api/v1/projects/{name}/items": {
            "parameters": [_PROJECT],
            "get": {
                "summary": "A project's items.",
                "responses": {
                    "200": _json(
                        "Items",
                        {"properties": {"items": {"type": "array", "items": _ITEM}}},
                    ),
                    "404": _ERROR,
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/projects/{name}/events": {
            "parameters": [_PROJECT],
            "get": {
                "summary": "The project's board as SSE `items` snapshots: `{project, items,"
                " agents: {busy, max}}` (items as the items list, with `agent`).",
                "parameters": [_TOKEN],
                "responses": {"200": _SSE, "404": _ERROR, "429": _ERROR, **_REFUSALS},
            },
        },
        "/api/v1/projects/{name}/items/{n}": {
            "parameters": [_PROJECT, _NUMBER],
            "get": {
                "summary": "One item in full: text, stage, dependencies, timers, cost.",
                "responses": {"200": _json("Item", _ITEM), "404": _ERROR, **_REFUSALS},
            },
        },
        "/api/v1/projects/{name}/items/{n}/history": {
            "parameters": [_PROJECT, _NUMBER],
            "get": {
                "summary": "The item's ops from the op log: who, what, when, origin.",
                "responses": {
                    "200": _json("History", {"type": "object"}),
                    "404": _ERROR,
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/projects/{name}/items/{n}/agent": {
            "parameters": [_PROJECT, _NUMBER],
            "get": {
                "summary": "The item's agent and its recent output lines (`?lines=` 1–200).",
                "responses": {
                    "200": _json("Agent", {"type": "object"}),
                    "400": _ERROR,
                    "404": _ERROR,
                    **_REFUSALS,
                },
            },
        },
        "/api/v1/cost": {
            "get": {
                "summary": "Spend per UTC day, the top items and the last 24 h (as `cost`).",
                "parameters": [_DAYS],
                "responses": {"200": _json("Cost", {"type": "object"}), **_REFUSALS},
            }
        },
        "/api/v1/me": {
            "get": {
                "summary": "The page's user and whether they are a web admin.",
                "responses": {"200": _json("Me", {"type": "object"}), **_REFUSALS},
            }
        },
    },
}
