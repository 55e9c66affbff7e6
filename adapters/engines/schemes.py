"""The engine of a named database, chosen by its URL's scheme (docs/engines.md).

A new engine is one module implementing ``contract.Engine``, listed here and by its schemes
in ``core/engine_url.py``.
"""

from __future__ import annotations

from typing import Final

from adapters.engines.contract import Engine
from adapters.engines.mariadb import MariaEngine
from adapters.engines.redis import RedisEngine
from adapters.engines.stream import EngineError
from core.engine_url import engine_of, password_free

ENGINES: Final[dict[str, Engine]] = {e.kind: e for e in (MariaEngine(), RedisEngine())}


def engine_for(url: str) -> Engine:
    """The engine of ``url``'s scheme; ``ValueError`` naming the schemes known."""
    return ENGINES[engine_of(url)]


def split_url(url: str) -> tuple[Engine, str, str | None]:
    """The engine, the password-free URL and the password of a named database's URL;
    ``ValueError`` saying what is wrong with it."""
    engine = engine_for(url)
    stored, password = password_free(url)
    try:
        engine.check_url(stored)
    except EngineError as exc:
        raise ValueError(exc.message) from None
    return engine, stored, password
