"""A real HTTP endpoint that records the failure notifications cairn POSTs to it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class WebhookReceiver:
    """Records the JSON bodies it accepts; answers 503 while ``fail_next`` lasts, and what
    ``refusal`` says (None: accepted)."""

    def __init__(self, path: str = "/hooks/backup-failed") -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.raw.append((dict(self.headers.items()), body))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(503)
                elif (status := receiver.refusal(self.headers, body)) is not None:
                    self.send_response(status)
                else:
                    receiver.events.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def refusal(self, headers: Any, body: bytes) -> int | None:
        return None

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def for_execution(self, subject_id: str) -> list[dict[str, Any]]:
        """Events about one backup execution or restore."""
        return [e for e in self.events if e.get("id") == subject_id]
