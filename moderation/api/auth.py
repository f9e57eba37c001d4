"""What every API route does before its own work: the caller's token, its rate limit and the
method, each refused with a JSON body (``{"message": ...}``, HMA's error shape).

Order: token (401), then rate limit (429, every authenticated call counts), then method (405):
a caller without a token learns nothing, not even which methods a route takes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from moderation import ratelimit, signals
from moderation.api.tokens import token_for
from moderation.models import ApiToken

# The window of the per-token limit (``ApiToken.rate_limit`` requests per window), seconds.
RATE_WINDOW = 60


class ApiError(Exception):
    """Refuse the call with ``status`` and ``message`` (a 4xx JSON error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """A JSON error in HMA's shape: ``{"message": ...}``."""
    response = JsonResponse({"message": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _unauthorized(message: str) -> JsonResponse:
    return error(401, message, WWW_Authenticate='Bearer realm="api"')


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def api_view(
    *methods: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Make a view an API route taking ``methods``: it is called as ``view(request, token)``
    only for an active token under its rate limit and an allowed method. CSRF does not apply
    (no cookies are read: the token is the credential). ``ApiError`` and ``SignalError`` (a
    bad signal type or hash, a file that is not an acceptable image) become 4xx JSON."""

    allowed = tuple(m.upper() for m in methods)

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            secret = bearer_token(request)
            if secret is None:
                return _unauthorized("missing token: send 'Authorization: Bearer <token>'")
            token: ApiToken | None = token_for(secret)
            if token is None:
                return _unauthorized("invalid or revoked token")
            if token.rate_limit:
                over = ratelimit.count_request(
                    "api-token", str(token.pk), limit=token.rate_limit, window=RATE_WINDOW
                )
                if over is not None:
                    return error(
                        429,
                        f"rate limit of {token.rate_limit} requests per {RATE_WINDOW} s "
                        f"reached; retry in {over.retry_after} s",
                        Retry_After=str(over.retry_after),
                    )
            if request.method not in allowed:
                return error(
                    405,
                    f"method {request.method} not allowed; use {', '.join(allowed)}",
                    Allow=", ".join(allowed),
                )
            try:
                return view(request, token, *args, **kwargs)
            except ApiError as e:
                return error(e.status, e.message)
            except signals.SignalError as e:
                return error(400, str(e))

        wrapper.api_methods = allowed  # read by the OpenAPI consistency test
        return wrapper

    return decorate
