"""The worker's own Prometheus endpoint, behind the API's scrape token.

Its series name applications of every tenant (``core/metrics.py``), like the API's
``/metrics``, so it answers only a request with ``Authorization: Bearer
<CAIRN_METRICS_TOKEN>`` (compared in constant time) and 401 to any other. A platform
administrator's API token, which the API's ``/metrics`` also takes, is not looked up here:
the endpoint stays a plain thread of the worker, with no database read per scrape.
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

REFUSAL = (
    b"the worker's metrics name every tenant's applications: send"
    b" 'Authorization: Bearer <token>' with the scrape token (CAIRN_METRICS_TOKEN)\n"
)


class MetricsTokenMissing(ValueError):
    """A metrics port without a scrape token: every scrape would be refused."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the worker's exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """A scrape every few seconds is not news for the worker log."""


def _guarded(app: WSGIApplication, token: str) -> WSGIApplication:
    expected = token.encode()

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Bearer realm="cairn worker metrics"'),
            ],
        )
        return [REFUSAL]

    return guarded


def serve_metrics(host: str, port: int, token: str | None) -> WSGIServer:
    """Serves the worker's metrics on ``host:port`` in a daemon thread, behind ``token``."""
    if not token:
        raise MetricsTokenMissing(
            "CAIRN_WORKER_METRICS_PORT is set but CAIRN_METRICS_TOKEN is not: the worker's"
            " metrics name every tenant's applications and are served only with the scrape"
            " token; set CAIRN_METRICS_TOKEN (the API's /metrics takes the same) or unset"
            " CAIRN_WORKER_METRICS_PORT"
        )
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_Server):
        address_family = family  # an IPv6 host needs its own family

    server = make_server(host, port, _guarded(make_wsgi_app(), token), Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="cairn-metrics", daemon=True).start()
    return server
