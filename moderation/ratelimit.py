"""Rate limits: how many photos a user, and a client IP, may upload per window, how many
appeals and photo reports a person may file, how many new-address confirmation emails a person
and a client IP may ask for, and how many requests an API token may make (``count_request``).

A small fixed-window counter on Django's cache rather than a library: django-ratelimit (the
usual choice) counts whole views from a decorator, while only requests that carry a photo are
counted here, by user and by IP together, and it has not declared support for Django 6. The
counter is ``cache.add`` (start the window at 0) then ``cache.incr``, both atomic on Redis and
Memcached; LocMemCache is atomic within its process only, and DatabaseCache's ``incr`` is a
read-then-write that can undercount a burst by a few. Production points CACHES at a shared cache
(``DJANGO_CACHE_URL``, see settings): with a per-process cache each web worker counts alone.

Fixed windows let a client spend a whole limit at the end of one window and again at the start
of the next (at most twice the limit in a short burst); for uploads that is an acceptable price
for one cache key per client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest

from moderation.conf import moderation_settings

_KEY_PREFIX = "moderation:upload-rate"
_APPEAL_KEY_PREFIX = "moderation:appeal-rate"
_REPORT_KEY_PREFIX = "moderation:report-rate"
_SIGNUP_KEY_PREFIX = "moderation:signup-rate"
_EMAIL_KEY_PREFIX = "moderation:email-rate"


@dataclass(frozen=True)
class RateLimited:
    """Which limit an upload ran into, and when the window ends (seconds from now)."""

    scope: str  # "user" or "ip" (uploads), "api-token" (the lookup API)
    retry_after: int


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP: REMOTE_ADDR, or the X-Forwarded-For entry our own proxies appended.

    With ``MODERATION_TRUSTED_PROXY_COUNT`` = N, the N-th address from the right is the one the
    outermost trusted proxy saw; anything left of it was written by the client and is ignored.
    """
    proxies = moderation_settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def _hit(
    scope: str, ident: str, limit: int, window: int, now: float, prefix: str = _KEY_PREFIX
) -> RateLimited | None:
    window_start = int(now // window)
    key = f"{prefix}:{scope}:{ident}:{window_start}"
    cache.add(key, 0, timeout=window + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: this is the first hit of a new window
        cache.add(key, 1, timeout=window + 1)
        count = 1
    if count > limit:
        return RateLimited(scope, max(1, int((window_start + 1) * window - now)))
    return None


def count_request(scope: str, ident: str, *, limit: int, window: int) -> RateLimited | None:
    """Count one request for ``ident`` in ``scope`` (e.g. an API token); say when it is over
    ``limit`` per ``window`` seconds. The same fixed-window counter as uploads."""
    return _hit(scope, ident, limit, window, time.time())


def check_upload_rate(request: HttpRequest) -> RateLimited | None:
    """Count one upload for the request's user and IP; say which limit it is over, if any.

    Every attempt counts, accepted or refused: someone probing the banned set's threshold with
    edited copies is exactly who the limit is for.
    """
    window = moderation_settings.UPLOAD_RATE_WINDOW
    now = time.time()
    checks = []
    if request.user.is_authenticated and moderation_settings.UPLOAD_RATE_PER_USER:
        checks.append(("user", str(request.user.pk), moderation_settings.UPLOAD_RATE_PER_USER))
    ip = client_ip(request)
    if ip and moderation_settings.UPLOAD_RATE_PER_IP:
        checks.append(("ip", ip, moderation_settings.UPLOAD_RATE_PER_IP))
    over = None
    for scope, ident, limit in checks:
        over = _hit(scope, ident, limit, window, now) or over
    return over


def check_appeal_rate(user) -> RateLimited | None:
    """Count one appeal for ``user``; say whether it is over ``MODERATION_APPEAL_RATE_PER_USER``
    per ``MODERATION_APPEAL_RATE_WINDOW``. Only appeals that would be written are counted (the
    caller checks the form first), so a typo does not use up someone's allowance."""
    limit = moderation_settings.APPEAL_RATE_PER_USER
    if not limit:
        return None
    window = moderation_settings.APPEAL_RATE_WINDOW
    return _hit("user", str(user.pk), limit, window, time.time(), prefix=_APPEAL_KEY_PREFIX)


def check_report_rate(user) -> RateLimited | None:
    """Count one photo report for ``user``; say whether it is over
    ``MODERATION_REPORT_RATE_PER_USER`` per ``MODERATION_REPORT_RATE_WINDOW``."""
    limit = moderation_settings.REPORT_RATE_PER_USER
    if not limit:
        return None
    window = moderation_settings.REPORT_RATE_WINDOW
    return _hit("user", str(user.pk), limit, window, time.time(), prefix=_REPORT_KEY_PREFIX)


def check_email_change_rate(*, user, ip: str | None) -> RateLimited | None:
    """Count one new-address confirmation email for ``user`` and the client ``ip``; say which
    limit (``MODERATION_EMAIL_RATE_PER_USER`` / ``_PER_IP`` per
    ``MODERATION_EMAIL_RATE_WINDOW``) it is over, if any.

    Each email goes to an address the asker chose, so without a limit the site could be made
    to mail anyone, any number of times, from one account or from many. Only requests that
    would send are counted (the caller checks the address first): a typo costs nothing.
    """
    window = moderation_settings.EMAIL_RATE_WINDOW
    now = time.time()
    checks = []
    if moderation_settings.EMAIL_RATE_PER_USER:
        checks.append(("user", str(user.pk), moderation_settings.EMAIL_RATE_PER_USER))
    if ip and moderation_settings.EMAIL_RATE_PER_IP:
        checks.append(("ip", ip, moderation_settings.EMAIL_RATE_PER_IP))
    over = None
    for scope, ident, limit in checks:
        over = _hit(scope, ident, limit, window, now, prefix=_EMAIL_KEY_PREFIX) or over
    return over


def check_signup_rate(request: HttpRequest) -> RateLimited | None:
    """Count one sign-up attempt for the client IP, at the login limits.

    A client IP gets as many sign-up attempts as it gets failed logins
    (``AXES_FAILURE_LIMIT``) in each lockout window (``AXES_COOLOFF_TIME``): enough for a person
    whose chosen name is taken or password refused, too few to mint accounts in bulk.
    """
    from django.conf import settings

    ip = client_ip(request)
    if not ip:
        return None
    window = max(1, int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return _hit(
        "ip", ip, settings.AXES_FAILURE_LIMIT, window, time.time(), prefix=_SIGNUP_KEY_PREFIX
    )
