"""The HTTP service: FastAPI app (:mod:`talprov.service.app`), workers, ``talprov serve``.

Nothing is imported here on purpose: the CLI imports :mod:`talprov.cli.serve`
on every invocation, and FastAPI/uvicorn (the ``service`` extra) are loaded only
when ``serve`` actually runs.
"""
