"""HTTPS plumbing the fakes share: a threaded TLS server and a handler that dispatches verbs."""

from __future__ import annotations

import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F")


class TLSServer(ThreadingHTTPServer, Generic[F]):
    """Serves ``handler`` over TLS; ``fake`` is the state the handler answers from."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        fake: F,
        context: ssl.SSLContext,
        handler: type[BaseHTTPRequestHandler],
        name: str,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.fake = fake
        self.context = context
        self.name = name
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        # The TLS handshake happens in the handler thread, so one slow client cannot
        # stall the accept loop.
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), (
            address
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("%s: connection from %s failed", self.name, client_address, exc_info=True)


class TLSHandler(BaseHTTPRequestHandler):
    """Completes the handshake, logs at debug level and hands every verb to ``_serve``."""

    protocol_version = "HTTP/1.1"
    server: TLSServer[Any]

    def setup(self) -> None:
        super().setup()
        self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s - %s", self.server.name, self.address_string(), format % args)

    def _serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
