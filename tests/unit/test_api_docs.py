"""The documentation function (functions/docs): Swagger UI and the key-free OpenAPI document."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

import pytest
from api_harness import LambdaContext, load_event
from fixtures.functions import load_function

from evreserve_lambda.openapi import bundled_document


@pytest.fixture(scope="module")
def docs() -> Any:
    return load_function("docs")


def get(docs: Any, path: str, *, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("get-docs.json")
    event["path"] = path
    event["requestContext"]["path"] = f"/dev{path}"
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    answer: dict[str, Any] = docs.handler(event, LambdaContext())
    return answer


def header(answer: dict[str, Any], name: str) -> str:
    return answer["multiValueHeaders"][name][0]


def test_the_page_needs_no_key_and_loads_its_assets_from_this_api(docs: Any):
    """No authorizer context at all (the route is open); the JS and CSS come from .../api/docs/assets, no CDN."""
    answer = get(docs, "/api/docs")
    assert answer["statusCode"] == 200
    assert header(answer, "Content-Type").startswith("text/html")
    page = answer["body"]
    # Relative to .../api/docs: right under a stage, a custom domain's base path or none.
    assert "src='docs/assets/swagger-ui-bundle.min.js'" in page
    assert "href='docs/assets/swagger-ui.min.css'" in page
    assert "https://" not in page.split("spec:")[0], "nothing before the spec is loaded from elsewhere"
    assert '"/api/ocpp/reservations"' in page and "<title>EV charging reservations API</title>" in page


def test_the_embedded_document_cannot_close_its_script_tag(docs: Any, monkeypatch: pytest.MonkeyPatch):
    import evreserve_lambda.openapi as openapi

    hostile = {**bundled_document(), "info": {"title": "x", "version": "1", "description": "</script><b>"}}
    monkeypatch.setattr(openapi, "bundled_document", lambda: hostile)
    monkeypatch.setattr(docs, "bundled_document", lambda: hostile)
    page = get(docs, "/api/docs")["body"]
    assert "</script><b>" not in page and "<\\/script><b>" in page


def test_the_documents_server_is_relative_to_where_it_is_read(docs: Any):
    """From /prod/api/docs/openapi.json, ../.. is /prod/, and so is .. from /prod/api/docs: the same stage."""
    document = json.loads(get(docs, "/api/docs/openapi.json")["body"])
    assert document["servers"] == [{"url": "../..", "description": "this API"}]
    assert document["paths"] == bundled_document()["paths"]
    via_page = json.loads(get(docs, "/api/docs", query={"format": "json"})["body"])
    assert via_page["servers"] == [{"url": "..", "description": "this API"}]
    # Resolved as Swagger UI resolves them (RFC 3986), from under a stage:
    assert urljoin("https://h.example/prod/api/docs/openapi.json", "../..") == "https://h.example/prod/"
    assert urljoin("https://h.example/prod/api/docs?format=json", "..") == "https://h.example/prod/"
    assert via_page["paths"] == document["paths"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("swagger-ui-bundle.min.js", "application/javascript"), ("swagger-ui.min.css", "text/css")],
)
def test_assets_are_served_with_their_type_and_cached(docs: Any, name: str, content_type: str):
    answer = get(docs, f"/api/docs/assets/{name}")
    assert answer["statusCode"] == 200
    assert header(answer, "Content-Type").startswith(content_type)
    assert "max-age=86400" in header(answer, "Cache-Control")
    assert len(answer["body"]) > 100_000


@pytest.mark.parametrize("name", ["oauth2.py", "..%2Fhtml.py", "swagger-ui.css"])
def test_only_the_two_assets_are_served(docs: Any, name: str):
    answer = get(docs, f"/api/docs/assets/{name}")
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"]) == {"error": "Not found", "code": "NOT_FOUND"}


@pytest.mark.parametrize(
    ("configured", "origin", "allowed"),
    [
        ("https://app.example.com", "https://app.example.com", True),
        ("https://app.example.com", "https://evil.example.com", False),
        ("", "https://app.example.com", False),
    ],
)
def test_answers_carry_cors_headers_for_the_configured_origin_only(
    monkeypatch: pytest.MonkeyPatch, configured: str, origin: str, allowed: bool
):
    """CORS_ALLOW_ORIGIN (template parameter CorsAllowOrigin) is read when a function starts."""
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", configured)
    fresh = load_function("docs")
    for path in ("/api/docs/openapi.json", "/api/docs/assets/nothing"):
        event = load_event("get-docs.json")
        event["path"] = path
        event["headers"]["Origin"] = origin
        event["multiValueHeaders"]["Origin"] = [origin]
        headers = fresh.handler(event, LambdaContext())["multiValueHeaders"]
        assert headers.get("Access-Control-Allow-Origin") == ([origin] if allowed else None), path
        if allowed:
            assert "Authorization" in headers["Access-Control-Allow-Headers"][0]


def test_an_answer_made_before_routing_carries_cors_headers_too(monkeypatch: pytest.MonkeyPatch):
    """The 400 for a body that is not JSON (like the per-key 429) is built before the resolver: a page on the
    allowed origin must still be able to read it."""
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", "https://app.example.com")
    fresh = load_function("docs")
    event = load_event("get-docs.json")
    event["body"] = "not json"
    event["headers"].update({"Origin": "https://app.example.com", "Content-Type": "text/plain"})
    answer = fresh.handler(event, LambdaContext())
    assert answer["statusCode"] == 400
    assert answer["multiValueHeaders"]["Access-Control-Allow-Origin"] == ["https://app.example.com"]
    assert answer["multiValueHeaders"]["Access-Control-Expose-Headers"] == ["Retry-After"]
