"""The one check of a URL cairn calls out to (offsite REST servers, notification webhooks)."""

from __future__ import annotations

import pytest

from api.schemas.common import web_url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://host/x", "must be an https:// URL"),
        ("https:///path", "must be an https:// URL"),
        ("http://hooks.example.com/x", "plain http:// only on a loopback address"),
        ("https://user:pw@hooks.example.com/", "must not carry credentials"),
        ("https://hooks.example.com/#frag", "must not have a fragment"),
        ("https://hooks.example.com:99999/", "has an invalid port"),
        ("https://hooks.example.com/a b", "must not contain spaces or control characters"),
    ],
)
def test_refused_urls_say_why(url: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        web_url(url)


def test_loopback_may_be_plain_http_and_a_query_may_be_refused() -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:1/"):
        assert web_url(url) == url
    assert web_url("https://hooks.example.com/x?token=1") == "https://hooks.example.com/x?token=1"
    with pytest.raises(ValueError, match="must not have a query or a fragment"):
        web_url("https://rest.example.com/?x=1", query=False)
    with pytest.raises(ValueError, match="of the REST server"):
        web_url("ftp://rest.example.com", what=" of the REST server")
    with pytest.raises(ValueError, match="credentials: give them in credentials"):
        web_url("https://a:b@rest.example.com", credentials=": give them in credentials")
