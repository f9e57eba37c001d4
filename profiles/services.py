"""Profile actions that are not about the photo (that is ``profiles.photos``)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from profiles.models import Profile


def profile_for(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, created on first use (users made in the admin have none yet)."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_update_details(*, profile: Profile, display_name: str) -> Profile:
    profile.display_name = display_name
    profile.save(update_fields=["display_name", "updated_at"])
    return profile
