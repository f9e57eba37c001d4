"""API tokens: issued to a calling service (the secret shown once), revoked, checked.

Every issue and revocation is an ``AuditEvent``. A token is ``<prefix>_<43 url-safe chars>``
(256 random bits); only its SHA-256 digest is stored (``ApiToken.key_digest``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from moderation.models import ApiToken, AuditEvent
from moderation.models.api import DEFAULT_RATE_LIMIT

TOKEN_PREFIX = "mdapi"  # noqa: S105 - a label, not a secret
# ``last_used_at`` is written at most this often per token: not a database write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its secret: the only time the secret exists outside the caller."""

    token: ApiToken
    secret: str


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_issue(
    *, name: str, actor: AbstractBaseUser | None, rate_limit: int = DEFAULT_RATE_LIMIT
) -> IssuedToken:
    """Issue a token for the calling service ``name`` (audited). Show ``secret`` once."""
    secret = f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            prefix=secret[: len(TOKEN_PREFIX) + 7],
            key_digest=digest_of(secret),
            rate_limit=rate_limit,
            created_by=actor,
        )
        AuditEvent.objects.create(
            action=AuditEvent.Action.TOKEN_ISSUE,
            actor=actor,
            target=f"API token {token.prefix}… ({name})"[:200],
            reason=f"rate limit {rate_limit}/min",
        )
    return IssuedToken(token, secret)


def tokens_revoke(
    *, tokens: list[ApiToken], actor: AbstractBaseUser | None, reason: str = ""
) -> int:
    """Revoke ``tokens`` (those not already revoked), audited; the next call with one is a 401.
    Returns how many were revoked."""
    count = 0
    now = timezone.now()
    with transaction.atomic():
        for token in tokens:
            if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
                revoked_at=now, revoked_by=actor
            ):
                continue
            AuditEvent.objects.create(
                action=AuditEvent.Action.TOKEN_REVOKE,
                actor=actor,
                target=f"API token {token.prefix}… ({token.name})"[:200],
                reason=reason,
            )
            count += 1
    return count


def token_for(secret: str) -> ApiToken | None:
    """The active token whose secret is ``secret``, or None (unknown, malformed or revoked).
    Marks it used (at most once per ``LAST_USED_RESOLUTION``)."""
    if not secret.startswith(f"{TOKEN_PREFIX}_") or len(secret) > 200:
        return None
    token = ApiToken.objects.active().filter(key_digest=digest_of(secret)).first()
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
