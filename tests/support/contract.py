"""Schemathesis against the app's own OpenAPI document, shared by the contract suites."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stealth_recovery.app import create_app

# "Schema-valid request rejected" is left out: rules such as a known time zone or currency, a key
# shape, or an id that exists are checked by the service (422 / 404), not expressible in a schema.
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SERVER_ERROR_CHECKS = [not_a_server_error]


def bounded(max_examples: int) -> Any:
    """Hypothesis settings that keep a contract suite to seconds and repeatable in CI."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )


def dashboard_schemas() -> tuple[Any, Any]:
    """The dashboard's pages and forms (kept out of the public document) as one positive and
    one negative schema: the document is built with the dashboard's routes shown, and requests
    go to an ordinary app."""
    from fastapi import FastAPI

    from stealth_recovery.dashboard.endpoints import PAGE_ROUTERS

    shown = FastAPI()
    hidden = [
        route
        for router in PAGE_ROUTERS
        for route in router.routes
        if not getattr(route, "include_in_schema", True)
    ]
    try:
        for route in hidden:
            route.include_in_schema = True  # type: ignore[attr-defined]
        for router in PAGE_ROUTERS:
            shown.include_router(router)
        document = shown.openapi()
    finally:
        for route in hidden:
            route.include_in_schema = False  # type: ignore[attr-defined]
    schemas = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        schema = schemathesis.openapi.from_dict(document)
        schema.app = create_app()
        schema.config.generation.update(modes=[mode])
        schemas.append(schema)
    return schemas[0], schemas[1]


def schemas_for(path_regex: str) -> tuple[Any, Any]:
    """The operations matching `path_regex`: one schema generating valid requests, one
    generating malformed ones. Building the app touches no database; requests reach the test
    database through the `db` fixture."""
    schemas = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app()).include(
            path_regex=path_regex
        )
        schema.config.generation.update(modes=[mode])
        schemas.append(schema)
    return schemas[0], schemas[1]
