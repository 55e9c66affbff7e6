"""Signed S3 requests (AWS Signature Version 4), for the check of an S3 target.

restic reaches S3 itself; cairn only needs, when a target is added, to try one
``DeleteObject`` with the everyday credentials (it must be refused; restic has no command
that deletes a single file without long retries) and to read what the bucket itself keeps
(object lock, versioning). Path-style URLs (``https://host/bucket/key``), an empty payload,
at most one query parameter without a value (``?object-lock``).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(
    method: str, url: str, key_id: str, secret: str, region: str, now: datetime
) -> dict[str, str]:
    """The headers that sign a request without a body (its query, if any, one bare name)."""
    parts = urlsplit(url)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            f"{quote(parts.query, safe='-_.~')}=" if parts.query else "",
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


def _texts(xml: bytes) -> dict[str, str]:
    """Every element's text by its local name (S3's answers are small, names unique)."""
    found: dict[str, str] = {}
    for element in ElementTree.fromstring(xml).iter():
        if element.text and element.text.strip():
            found[element.tag.rsplit("}", 1)[-1]] = element.text.strip()
    return found


def bucket_protection(
    bucket_url: str, key_id: str, secret: str, region: str, timeout: float
) -> dict[str, Any]:
    """What the bucket keeps by itself, as these credentials can read it: ``versioning``
    (``Enabled``, ``Suspended`` or None) and ``object_lock`` (``{"mode", "days"}`` of its
    default retention, or None: no lock, or one without a default retention).

    ``unreadable`` lists what the credentials may not read (403), so the record says it
    was not known rather than absent."""
    found: dict[str, Any] = {"versioning": None, "object_lock": None, "unreadable": []}
    with httpx.Client(timeout=timeout) as http:
        for query in ("versioning", "object-lock"):
            url = f"{bucket_url}?{query}"
            headers = signed_headers("GET", url, key_id, secret, region, datetime.now(UTC))
            answer = http.get(url, headers=headers)
            if answer.status_code == 403:
                found["unreadable"].append(query)
                continue
            if answer.status_code == 404:  # ObjectLockConfigurationNotFoundError
                continue
            answer.raise_for_status()
            texts = _texts(answer.content)
            if query == "versioning":
                found["versioning"] = texts.get("Status")
            elif texts.get("ObjectLockEnabled") == "Enabled" and "Mode" in texts:
                days = int(texts["Days"]) if "Days" in texts else 365 * int(texts["Years"])
                found["object_lock"] = {"mode": texts["Mode"], "days": days}
    return found
