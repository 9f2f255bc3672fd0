"""``/docs``: Swagger UI served from the installed package, never from a CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from
jsDelivr and its favicon from fastapi.tiangolo.com, which an air-gapped
installation cannot reach. Here the same page is built with URLs under
``/docs/assets``, served from the ``swagger-ui-bundle-v2`` package (Swagger UI
5's dist files, Apache-2.0, installed with the service extra; Swagger UI 4, which
the older ``swagger-ui-bundle`` ships, cannot render the OpenAPI 3.1 document
FastAPI publishes). ReDoc, which has no such package, is not offered.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its assets to ``app`` (create it with ``docs_url=None``).

    Raises ``ModuleNotFoundError`` when swagger-ui-bundle-v2 is not installed (it
    comes with talprov's service extra). Not idempotent: call once per app.
    """
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )
