"""The API surface: published schema, and no route that skips authentication."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

# Chat platforms call these without a token: the request signature made with
# the source's shared secret is the credential (tests/signals/test_callback_api.py).
PUBLIC_API_PATHS: set[str] = {"/api/v1/signals/callbacks/{source_name}"}


def test_every_api_route_requires_credentials(client: TestClient) -> None:
    """Every /api/v1 operation answers 401 to a request without a token or session."""
    paths = client.get("/openapi.json").json()["paths"]
    operations = [
        (method.upper(), path)
        for path, item in paths.items()
        if path.startswith("/api/v1") and path not in PUBLIC_API_PATHS
        for method in item
    ]

    answers = {
        (method, path): client.request(method, re.sub(r"\{[^}]+\}", "1", path))
        for method, path in operations
    }

    assert len(answers) > 40
    refused = {key: r.status_code for key, r in answers.items()}
    assert {key: code for key, code in refused.items() if code != 401} == {}


def test_openapi_schema_lists_every_resource(client: TestClient) -> None:
    """The published OpenAPI document names each CRM and org-chart resource."""
    schema = client.get("/openapi.json").json()

    paths = set(schema["paths"])
    for resource in (
        "accounts",
        "contacts",
        "opportunities",
        "products",
        "quotas",
        "activities",
        "employees",
        "departments",
        "regions",
        "pipelines",
    ):
        assert f"/api/v1/{resource}" in paths
    assert "/api/v1/opportunities/{opportunity_id}/stage" in paths
