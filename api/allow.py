"""The methods a path supports, for the ``Allow`` header every 405 carries (RFC 9110 15.5.6).

The router's own 405 names the methods of the first route it found at the path only (``GET``
where ``GET`` and ``PATCH`` are two routes), so every method is asked of the router instead.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.routing import Match

METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request, said: str | None) -> str:
    """The methods a route at ``request``'s path fully matches.

    A mounted app (static files) matches every method and refuses one itself; its own
    ``Allow`` (``said``) is then the answer.
    """
    scope = request.scope
    # a mount that took the request moved its prefix into root_path; the app's own is kept
    top = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**top, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    if request.method in allowed and said:
        return said
    return ", ".join(allowed)
