"""Profile and account actions that are not about the photo (that is ``profiles.photos``).

An email address is only ever used once its owner has followed a link mailed to it: at sign-up
and at every change (``email_change_request``), for people and staff alike. Until then the
account keeps the address it had, so notices never go to an address nobody confirmed.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.translation import ngettext

from moderation import ratelimit
from moderation.conf import moderation_settings
from moderation.models import AuditEvent
from profiles.models import Profile

_EMAIL_SALT = "profiles.verify-email"
EMAIL_LINK_MAX_AGE = 3 * 24 * 3600  # seconds a verification link works
EMAIL_MAX_LENGTH = 254  # the user model's column


class TooManyEmails(Exception):
    """``email_change_request`` refused: the person or their IP asked for too many
    confirmation emails in the window (``limited`` says which, and for how long)."""

    def __init__(self, limited: ratelimit.RateLimited) -> None:
        super().__init__(f"too many confirmation emails ({limited.scope})")
        self.limited = limited

    @property
    def message(self) -> str:
        """What the form says: how long to wait, and that nothing was sent."""
        minutes = max(1, round(self.limited.retry_after / 60))
        return ngettext(
            "You've asked for a lot of confirmation emails in a short time. Please wait about "
            "%(minutes)d minute and try again; nothing was sent.",
            "You've asked for a lot of confirmation emails in a short time. Please wait about "
            "%(minutes)d minutes and try again; nothing was sent.",
            minutes,
        ) % {"minutes": minutes}


def profile_for(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, created on first use (users made in the admin have none yet)."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_update_details(*, profile: Profile, display_name: str) -> Profile:
    """Save a changed display name (an unchanged one writes nothing)."""
    if profile.display_name != display_name:
        profile.display_name = display_name
        profile.save(update_fields=["display_name", "updated_at"])
    return profile


def _audit(action: str, *, user: AbstractBaseUser, reason: str) -> None:
    # The address itself stays out of the audit trail, which every moderator may read.
    AuditEvent.objects.create(
        action=action, actor=user, target=f"user {user.get_username()}", reason=reason
    )


def email_verification_send(*, user: AbstractBaseUser, email: str) -> None:
    """Mail ``email`` a signed link that, followed, makes it ``user``'s address. Nothing is
    stored until then, so an address nobody confirmed never receives a notice. The link names
    the address the account has now, and stops working once that changes (a newer link
    followed first)."""
    token = signing.dumps({"user": user.pk, "email": email, "was": user.email}, salt=_EMAIL_SALT)
    link = moderation_settings.SITE_URL.rstrip("/") + reverse("verify-email", args=[token])
    send_mail(
        "Confirm your email address",
        "Follow this link to confirm that we may email you about your profile photo "
        f"(it works for three days):\n\n{link}\n\nIf you did not ask for this, ignore this "
        "email.",
        None,
        [email],
    )


def email_change_request(*, user: AbstractBaseUser, email: str, ip: str | None = None) -> str:
    """Give ``user`` a new address: mail it a verification link (``email_verification_send``)
    and audit the request; the current address stays in use until the link is followed.
    Returns the address as it will be stored.

    Raises ``ValidationError`` for an invalid address (``invalid``) or the account's own
    (``unchanged``), and ``TooManyEmails`` when ``user`` or the client ``ip`` is over its
    limit (``ratelimit.check_email_change_rate``, counted only for a valid new address);
    nothing is sent or written then, nor when the mail cannot be sent (the error propagates).
    Addresses are not unique here (Django's user model), so another account's address is not
    an error: only its owner can follow the link.
    """
    email = get_user_model().objects.normalize_email((email or "").strip())
    validate_email(email)
    if len(email) > EMAIL_MAX_LENGTH:
        raise ValidationError("Enter a valid email address.", code="invalid")
    if email.lower() == (user.email or "").lower():
        raise ValidationError("That is already your address.", code="unchanged")
    limited = ratelimit.check_email_change_rate(user=user, ip=ip)
    if limited is not None:
        raise TooManyEmails(limited)
    with transaction.atomic():
        _audit(
            AuditEvent.Action.EMAIL_REQUEST,
            user=user,
            reason="verification link sent to a new address",
        )
        email_verification_send(user=user, email=email)
    return email


def email_verify(*, token: str) -> AbstractBaseUser | None:
    """The user whose address a verification link confirms, with the address now saved and
    audited; None for a link that was altered, has expired, names no active user, or was made
    for an address the account has changed since."""
    try:
        data = signing.loads(token, salt=_EMAIL_SALT, max_age=EMAIL_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    user = get_user_model()._default_manager.filter(pk=data["user"], is_active=True).first()
    if user is None:
        return None
    if user.email == data["email"]:
        return user  # followed twice
    if "was" in data and user.email != data["was"]:
        return None
    with transaction.atomic():
        user.email = data["email"]
        user.save(update_fields=["email"])
        _audit(AuditEvent.Action.EMAIL_CONFIRM, user=user, reason="new address confirmed")
    return user


def account_update_name(*, user: AbstractBaseUser, first_name: str, last_name: str) -> bool:
    """Set the account's name (what the admin greets staff with); audited when it changed."""
    first_name, last_name = first_name.strip(), last_name.strip()
    if (user.first_name, user.last_name) == (first_name, last_name):
        return False
    with transaction.atomic():
        user.first_name, user.last_name = first_name, last_name
        user.save(update_fields=["first_name", "last_name"])
        _audit(AuditEvent.Action.NAME_CHANGE, user=user, reason="own name changed")
    return True
