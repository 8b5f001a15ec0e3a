"""The API's documentation, open to anyone: Swagger UI and the OpenAPI document it shows.

No key is needed (template.yaml: ``Auth: {Authorizer: NONE}``): the document describes
the API, never its data, and a partner reads it before holding a key. The page is
Powertools' own Swagger UI page, with the document built from every function's routes
(``devstack/openapi.py``, bundled in the functions' layer) rather than from this
function's: each function has its own resolver, so Powertools' ``enable_swagger`` here
would document only these three routes. Its JavaScript and CSS are the copies Powertools
ships, served from this function: the page loads nothing from a CDN.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import aws_lambda_powertools.event_handler.openapi.swagger_ui as swagger_ui
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

from evreserve_lambda.app import create_app, json_response, lambda_handler
from evreserve_lambda.openapi import bundled_document, errors

app = create_app()

DOCS_PATH = "/api/docs"
ASSETS = {
    "swagger-ui-bundle.min.js": "application/javascript; charset=utf-8",
    "swagger-ui.min.css": "text/css; charset=utf-8",
}
#: The assets change only with the layer's Powertools version: a day in browsers' caches.
ASSET_CACHE = "public, max-age=86400"
_PAGE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def document_for(server: str) -> dict[str, Any]:
    """The bundled document with one server, relative to where it is read from.

    Relative URLs make no guess at the stage or a custom domain's base path: from
    ``/prod/api/docs``, ``..`` is ``/prod/``, and from ``/api/docs`` (the local API) it is
    ``/``, so "Try it out" calls the API the page came from.
    """
    document = copy.deepcopy(bundled_document())
    document["servers"] = [{"url": server, "description": "this API"}]
    return document


@app.get(
    f"{DOCS_PATH}/openapi.json",
    summary="This API's OpenAPI document, no key needed",
    description="The same document as /api/openapi.json, its server set to the stage it is read from.",
    tags=["Meta"],
    responses=errors(),
)
def openapi_document() -> Response[Any]:
    return json_response(HTTPStatus.OK, document_for("../.."), {"Cache-Control": "no-cache"})


@app.get(
    DOCS_PATH,
    summary="Swagger UI for this API (an HTML page), no key needed",
    tags=["Meta"],
    responses={**errors(), 200: {"description": "The page", "content": {"text/html": {}}}},
)
def swagger_page() -> Response[str]:
    # Swagger UI asks for ``?format=json`` when its "download" link is used (Powertools' page).
    if app.current_event.get_query_string_value("format") == "json":
        return json_response(HTTPStatus.OK, document_for(".."), {"Cache-Control": "no-cache"})
    spec = json.dumps(document_for("..")).replace("</", "<\\/")  # keeps "</script>" inside the string
    assets = "docs/assets"  # relative to .../api/docs, whatever precedes it
    page = generate_swagger_html(
        spec,
        f"{assets}/swagger-ui-bundle.min.js",
        f"{assets}/swagger-ui.min.css",
        assets,
        None,
        persist_authorization=False,
    )
    page = page.replace("<title>Swagger UI</title>", f"<title>{bundled_document()['info']['title']}</title>")
    return Response(HTTPStatus.OK, "text/html; charset=utf-8", page, headers=_PAGE_HEADERS)


@cache
def _asset(name: str) -> str:
    return (Path(swagger_ui.__file__).parent / name).read_text(encoding="utf-8")


@app.get(
    f"{DOCS_PATH}/assets/<name>",
    summary="Swagger UI's JavaScript and CSS, served by this API (no CDN)",
    tags=["Meta"],
    responses={
        **errors(),
        200: {"description": "The file", "content": {"application/javascript": {}, "text/css": {}}},
    },
)
def swagger_asset(name: Annotated[str, PathParam(max_length=64)]) -> Response[Any]:
    if name not in ASSETS:
        return json_response(HTTPStatus.NOT_FOUND, {"error": "Not found", "code": "NOT_FOUND"})
    headers = {"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"}
    return Response(HTTPStatus.OK, ASSETS[name], _asset(name), headers=headers)


handler: Any = lambda_handler(app)
