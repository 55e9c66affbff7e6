"""Real receivers for notification channels: an HTTP endpoint that verifies cairn's HMAC
signature and timestamp (as docs/alerts.md tells a receiver to), and an SMTP server
(``aiosmtpd``) with STARTTLS and AUTH."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.webhook import WebhookReceiver

REPLAY_WINDOW = 300


def verify(key: str, headers: Any, body: bytes, now: float | None = None) -> bool:
    """The recipe of docs/alerts.md: recompute the signature, compare in constant time, and
    refuse a timestamp outside five minutes."""
    timestamp = headers.get("X-Cairn-Timestamp", "")
    signature = headers.get("X-Cairn-Signature", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > REPLAY_WINDOW:
        return False
    expected = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(signature, "sha256=" + expected.hexdigest())


class SignedReceiver(WebhookReceiver):
    """Records the JSON bodies it accepts; answers 401 to a bad signature (``key`` set) and
    503 while ``fail_next`` lasts."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__("/hooks/cairn")
        self.key = key
        self.refused: list[str] = []

    def refusal(self, headers: Any, body: bytes) -> int | None:
        if self.key is not None and not verify(self.key, headers, body):
            self.refused.append(body.decode())
            return 401
        return None


class SmtpServer:
    """An SMTP server on the loopback that requires STARTTLS (a certificate of a test CA,
    written to ``ca_path``) and AUTH with ``username``/``password``; ``messages`` are the mails
    it accepted."""

    def __init__(self, folder: Path, port: int, username: str, password: str) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[str, bool]] = []
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = folder / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(tls)
        server = self

        class Handler:
            async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
                server.messages.append(message_from_bytes(envelope.content, policy=default))
                return "250 OK"

        def authenticator(
            smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and data.login.decode() == username
                and data.password.decode() == password
            )
            server.logins.append((data.login.decode() if data else "", ok))
            return AuthResult(success=ok, handled=False)

        self.port = port
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=port,
            tls_context=tls,
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
