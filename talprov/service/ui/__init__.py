"""The status page: a read-only web UI of the service under ``/ui``.

Server-rendered (Jinja2 templates and one stylesheet from this package, no CDN),
signed in with the API's tokens (:mod:`talprov.service.ui.session`), kept live by
a small script that polls for changed requests (:mod:`talprov.service.ui.routes`).
"""
