"""Reviewer wellness: how the admin shows images to moderators, and how many they look at.

Every image a moderator sees in the admin is blurred and greyscale until clicked (a
per-moderator preference turns that off). Each reveal, and each full-size view of a
quarantined file, counts as one image viewed that day; with blurring off, every image a page
shows counts when the page loads. The counts are shown to each moderator and to admins.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from moderation.models import ImageViewDay, ModeratorPreference

# One request may count at most this many views (a page of thumbnails shown unblurred).
MAX_VIEWS_PER_REQUEST = 200


def blurs_images(user: AbstractBaseUser) -> bool:
    """Whether the admin blurs images for ``user`` (yes, unless they turned it off)."""
    if not getattr(user, "is_authenticated", False):
        return True
    found = (
        ModeratorPreference.objects.filter(user=user).values_list("blur_images", flat=True).first()
    )
    return True if found is None else found


def set_blur(*, user: AbstractBaseUser, blur: bool) -> bool:
    """Record ``user``'s choice to blur images until clicked (or not)."""
    ModeratorPreference.objects.update_or_create(user=user, defaults={"blur_images": blur})
    return blur


def count_views(*, user: AbstractBaseUser, views: int = 1) -> int:
    """Add ``views`` images to ``user``'s count for today; returns today's count. One UPDATE
    (an insert the first time that day), so views counted at the same time all count."""
    views = max(0, min(int(views), MAX_VIEWS_PER_REQUEST))
    today = timezone.localdate()
    rows = ImageViewDay.objects.filter(user=user, day=today)
    if views:
        if not rows.update(views=F("views") + views):
            try:
                with transaction.atomic():
                    ImageViewDay.objects.create(user=user, day=today, views=views)
            except IntegrityError:  # created by another request a moment ago
                rows.update(views=F("views") + views)
    return views_today(user)


def views_today(user: AbstractBaseUser) -> int:
    return (
        ImageViewDay.objects.filter(user=user, day=timezone.localdate())
        .values_list("views", flat=True)
        .first()
        or 0
    )


def views_per_moderator(days: int = 7) -> list[dict]:
    """``[{"user__username", "today", "week"}]``: every moderator who viewed images in the last
    ``days`` days, most today first (the admins' view on the dashboard)."""
    today = timezone.localdate()
    week = (
        ImageViewDay.objects.filter(day__gt=today - timedelta(days=days))
        .values("user_id", "user__username")
        .annotate(total=Sum("views"))
    )
    todays = dict(ImageViewDay.objects.filter(day=today).values_list("user_id", "views"))
    rows = [
        {"username": w["user__username"], "today": todays.get(w["user_id"], 0), "week": w["total"]}
        for w in week
    ]
    return sorted(rows, key=lambda r: (-r["today"], -r["week"], r["username"]))
