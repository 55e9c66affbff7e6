"""One signed S3 request (AWS Signature Version 4), for the check of an S3 target.

restic reaches S3 itself; cairn only needs to try one ``DeleteObject`` with the everyday
credentials when a target is added (it must be refused), and restic has no command that
deletes a single file without long retries. Path-style URLs
(``https://host/bucket/key``), an empty payload, no query string.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str, url: str, key_id: str, secret: str, region: str, now: datetime
) -> dict[str, str]:
    """The headers that sign a request without a body or a query."""
    parts = urlsplit(url)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            names,
            _EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={names},"
        f" Signature={signature}"
    )
    return {**headers, "authorization": authorization}


def delete_object(url: str, key_id: str, secret: str, region: str, timeout: float) -> int:
    """Asks S3 to delete the object at ``url``; the HTTP status it answered."""
    headers = signed_headers("DELETE", url, key_id, secret, region, datetime.now(UTC))
    with httpx.Client(timeout=timeout) as http:
        return http.delete(url, headers=headers).status_code
