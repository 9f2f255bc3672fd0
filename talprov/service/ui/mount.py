"""Mounting the status page on the service's FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from talprov.service.ui.routes import HERE, SignInRequired, router
from talprov.service.ui.views import PlanCache


def install_ui(app: FastAPI) -> None:
    """Serve the status page at ``/ui`` (and its assets at ``/ui/static``)."""

    @app.exception_handler(SignInRequired)
    async def sign_in_first(_request: Request, _exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse("/ui/sign-in", status_code=303)

    app.state.ui_plans = PlanCache()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
