"""Profile actions that are not about the photo (that is ``profiles.photos``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.mail import send_mail
from django.urls import reverse

from moderation.conf import moderation_settings
from profiles.models import Profile

_EMAIL_SALT = "profiles.verify-email"
EMAIL_LINK_MAX_AGE = 3 * 24 * 3600  # seconds a verification link works


def profile_for(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, created on first use (users made in the admin have none yet)."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_update_details(*, profile: Profile, display_name: str) -> Profile:
    profile.display_name = display_name
    profile.save(update_fields=["display_name", "updated_at"])
    return profile


def email_verification_send(*, user: AbstractBaseUser, email: str) -> None:
    """Mail ``email`` a signed link that, followed, makes it ``user``'s address. Nothing is
    stored until then, so an address nobody confirmed never receives a notice."""
    token = signing.dumps({"user": user.pk, "email": email}, salt=_EMAIL_SALT)
    link = moderation_settings.SITE_URL.rstrip("/") + reverse("verify-email", args=[token])
    send_mail(
        "Confirm your email address",
        "Follow this link to confirm that we may email you about your profile photo "
        f"(it works for three days):\n\n{link}\n\nIf you did not sign up, ignore this email.",
        None,
        [email],
    )


def email_verify(*, token: str) -> AbstractBaseUser | None:
    """The user whose address a verification link confirms, with the address now saved;
    None for a link that was altered, has expired, or names no active user."""
    try:
        data = signing.loads(token, salt=_EMAIL_SALT, max_age=EMAIL_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    user = get_user_model()._default_manager.filter(pk=data["user"], is_active=True).first()
    if user is None:
        return None
    user.email = data["email"]
    user.save(update_fields=["email"])
    return user
