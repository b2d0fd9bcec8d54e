"""The OpenAPI document, generated from the routes the app really serves.

Each handler carries its own description (``@described``); the document is built by walking the
router, so a route cannot exist without appearing here, and request schemas come from the same
pydantic models the handlers validate with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from hotline_bridge import __version__
from hotline_bridge.web.http import MUTATING

F = TypeVar("F", bound=Callable[..., Any])

_ERRORS = {
    "400": "malformed JSON, or a body that could not be decoded (e.g. false gzip)",
    "401": "missing or unknown bearer token",
    "403": "not allowed for this token",
    "404": "unknown id",
    "408": "the request body did not arrive in time",
    "409": "the call is not in a state that allows this",
    "413": "request body too large",
    "415": "the body must be application/json",
    "422": "invalid fields (listed in details)",
    "429": "too many requests from this principal; see Retry-After",
    "503": "the PBX link is down; nothing was attempted",
}


def described(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    ok: int = 200,
    errors: tuple[int, ...] = (),
    public: bool = False,
    other: Mapping[int, str] | None = None,
) -> Callable[[F], F]:
    """Describe a handler. ``errors`` are answered with the ``Error`` body; ``other`` maps a
    status answered with the operation's own body (e.g. a degraded health report) to its
    description."""

    def mark(handler: F) -> F:
        handler.__openapi__ = {  # type: ignore[attr-defined]
            "summary": summary,
            "body": body,
            "ok": ok,
            "errors": errors,
            "public": public,
            "other": dict(other or {}),
        }
        return handler

    return mark


def _error_codes(method: str, path: str, meta: dict[str, Any]) -> list[int]:
    codes = set(meta["errors"])
    if method in MUTATING and not meta["public"]:
        codes.add(429)  # every request that changes something is rate-limited per principal
    if "{" in path:
        codes.add(404)  # a path parameter that names nothing (or cannot name anything)
    return sorted(codes)


def openapi_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        meta = getattr(route.handler, "__openapi__", None)
        if not path or meta is None:
            continue
        errors = _error_codes(route.method, path, meta)
        op: dict[str, Any] = {
            "summary": meta["summary"],
            "operationId": route.handler.__name__ + "_" + re.sub(r"\W+", "_", path).strip("_"),
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in re.findall(r"{(\w+)}", path)
            ],
            "responses": {str(meta["ok"]): {"description": "success"}}
            | {str(code): {"description": text} for code, text in meta["other"].items()}
            | {
                str(code): {
                    "description": _ERRORS.get(str(code), "error"),
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code in errors
            },
        }
        if 429 in errors:
            op["responses"]["429"]["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        if not meta["public"]:
            op["security"] = [{"bearer": []}]
        model = meta["body"]
        if model is not None:
            schemas[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        paths.setdefault(path, {})[route.method.lower()] = op
    for schema in list(schemas.values()):
        schemas.update(schema.pop("$defs", {}))
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "reason"],
                "properties": {
                    "status": {"type": "integer"},
                    "reason": {"type": "string"},
                    "details": {},
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "hotline-bridge", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
