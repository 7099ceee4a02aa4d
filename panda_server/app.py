"""create_app: the PanDA server as a Flask WSGI application."""

from __future__ import annotations

import functools
import logging

from flask import Flask, Response, request

from panda_server.db.engine import make_engine
from panda_server.errors import PandaError
from panda_server.logs import configure_logging
from panda_server.protocol import wire
from panda_server.settings import Settings
from panda_server.taskbuffer import sitedata


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask("panda_server", static_folder=None)  # every route must be in web/policy.py
    app.config["PANDA_SETTINGS"] = settings
    app.config["PANDA_ENGINE"] = make_engine(settings.database_url, pool_size=settings.threads)
    # Flask refuses larger bodies with 413 before we read them; gzip is capped again on inflate.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    from panda_server.web import api_v1, cache, legacy, openapi

    app.register_blueprint(legacy.bp)
    app.register_blueprint(openapi.bp)  # before api_v1: its route would match /api/v1/openapi.json too
    app.register_blueprint(api_v1.bp)
    app.register_blueprint(cache.bp)

    from panda_server import logs
    from panda_server.web import common

    logs.current_user = common.current_user_name

    @app.after_request
    def _security_headers(response: Response) -> Response:
        if request.environ.get("wsgi.url_scheme") == "https":
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    engine = app.config["PANDA_ENGINE"]

    @app.after_request
    def _flush_pilot_counts(response: Response) -> Response:
        # the dispatcher's getJob/updateJob counts go to the DB after the reply is sent, at most
        # every sitedata_flush_seconds (taskbuffer/sitedata.py), and once more at exit (wsgi.py)
        if sitedata.COUNTER.due(settings.sitedata_flush_seconds):
            response.call_on_close(functools.partial(sitedata.flush, engine))
        return response

    @app.errorhandler(PandaError)
    def _panda_error(exc: PandaError) -> Response:  # errors outside the two dispatchers
        return Response(
            wire.v1_envelope(False, exc.message), status=exc.http_status, mimetype="application/json"
        )

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> Response:
        return Response(wire.v1_envelope(False, f"request body exceeds {settings.max_body_bytes} bytes"),
                        status=413, mimetype="application/json")  # fmt: skip

    logging.getLogger(__name__).info("panda server app ready db=%s", settings.database_url.split("@")[-1])
    return app
