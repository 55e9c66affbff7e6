"""The database URL of an application is split so no password is stored in clear."""

from __future__ import annotations

import pytest

from core.database_url import database_url, split_database_url


def test_password_is_split_off_and_joined_back() -> None:
    settings, password = split_database_url("postgresql://app:p%40ss@db.internal:6543/shop")
    assert password == "p@ss"
    assert "p@ss" not in str(settings)
    assert database_url(settings) == "postgresql://app@db.internal:6543/shop"
    assert database_url(settings, password) == "postgresql://app:p%40ss@db.internal:6543/shop"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://u@h/db", "postgresql"),
        ("postgresql:///db", "host"),
        ("postgresql://u@h", "database"),
        ("postgresql://u@h/a/b", "database"),
        ("postgresql://u@h:99999/db", "port"),
    ],
)
def test_invalid_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        split_database_url(url)
