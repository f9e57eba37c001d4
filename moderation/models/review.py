"""The review queue and what its decisions leave: uploads queued near a banned fingerprint,
the allowlist of dismissed matches, and moderators' email subscriptions to the queue.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation.hashing import Fingerprint
from moderation.models.banned_set import FlaggedFingerprint


class ReviewItemQuerySet(models.QuerySet):
    def pending(self) -> ReviewItemQuerySet:
        return self.filter(status=ReviewItem.Status.PENDING)


class ReviewItem(models.Model):
    """A stored image that was accepted but is close to a banned fingerprint: a moderator
    looks at both and bans it (through the flag service) or dismisses it (an allowlist entry).

    Queued after an upload commits (``services.recheck_stored_image``) when the verdict is
    ``review``: a near miss within ``MODERATION_REVIEW_DISTANCE``, a candidate the pHash
    confirmation rejected, or a match with a low-information flag only.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        BANNED = "banned", _("Banned")
        DISMISSED = "dismissed", _("Dismissed")
        GONE = "gone", _("Image gone")

    class FoundBy(models.TextChoices):
        UPLOAD = "upload", _("its upload")
        SWEEP = "sweep", _("a sweep after a flag or a reindex")
        LIST_SWEEP = "list_sweep", _("a sweep of a hash list's entries")
        HELD = "held", _("held: its uploader is escalated as a prober")

    target_key = models.CharField(_("kind of image"), max_length=100)  # registry.ImageTarget.key
    object_id = models.PositiveBigIntegerField(_("object id"))
    target = models.CharField(_("target"), max_length=200, blank=True)
    file_name = models.CharField(_("stored file"), max_length=300)
    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"))
    phash = models.BigIntegerField(_("pHash (signed 64-bit)"), null=True, blank=True)
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploader"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("near banned fingerprint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_items",
    )
    # ...or the list entry (PDQ, MD5, SHA-256) it matched without blocking (a low-quality PDQ);
    # one of the two is set.
    signal_entry = models.ForeignKey(
        "moderation.SignalEntry",
        verbose_name=_("matched list entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_items",
    )
    distance = models.PositiveSmallIntegerField(_("dHash distance"))
    confirm_distance = models.PositiveSmallIntegerField(_("pHash distance"), null=True, blank=True)
    created_at = models.DateTimeField(_("queued"), default=timezone.now, db_index=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    found_by = models.CharField(
        _("found by"), max_length=10, choices=FoundBy.choices, default=FoundBy.UPLOAD
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("decided by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)

    objects = ReviewItemQuerySet.as_manager()

    class Meta:
        verbose_name = _("review item")
        ordering = ["created_at", "id"]
        permissions = [("review_upload", _("Can ban or dismiss queued uploads"))]
        constraints = [
            models.UniqueConstraint(
                fields=["target_key", "object_id", "file_name", "fingerprint"],
                condition=Q(status="pending"),
                name="one_pending_review_per_image_and_flag",
            ),
            models.UniqueConstraint(
                fields=["target_key", "object_id", "file_name", "signal_entry"],
                condition=Q(status="pending", signal_entry__isnull=False),
                name="one_pending_review_per_image_and_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.target or self.file_name} near {self.fingerprint or self.signal_entry}"

    @property
    def hex(self) -> str:
        return Fingerprint.from_signed(self.dhash).hex


class AllowedMatchQuerySet(models.QuerySet):
    def in_force(self) -> AllowedMatchQuerySet:
        """Exceptions that still apply (not revoked)."""
        return self.filter(revoked_at__isnull=True)


class AllowedMatch(models.Model):
    """An exception: an image a moderator looked at and found innocent, for one banned
    fingerprint. An upload within ``MODERATION_ALLOWLIST_DISTANCE`` dHash bits of ``dhash``
    (the same picture, re-encoded) is neither refused nor queued because of that fingerprint.
    Each row is one dismissal; too many for one fingerprint suspend it. A revoked row
    (``revoked_at``) no longer applies and no longer counts; it is kept for the record.
    Not cached anywhere: every lookup reads the rows in force, so a revocation applies to the
    next lookup in every process."""

    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("banned fingerprint"),
        on_delete=models.PROTECT,
        related_name="allowed_matches",
    )
    dhash = models.BigIntegerField(_("allowed image dHash (signed 64-bit)"), db_index=True)
    review_item = models.ForeignKey(
        ReviewItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("allowed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True, db_index=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("revoked by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = AllowedMatchQuerySet.as_manager()

    class Meta:
        verbose_name = _("allowed match (allowlist)")
        verbose_name_plural = _("allowlist (allowed matches)")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.dhash_hex} allowed for {self.fingerprint}"

    @property
    def dhash_hex(self) -> str:
        return Fingerprint.from_signed(self.dhash).hex


class ReviewSubscription(models.Model):
    """A moderator who asked for an email when uploads join the review queue: at most one
    per ``MODERATION_REVIEW_NOTIFY_MINUTES``, summarising the queue. ``last_notified_at`` is
    claimed with one conditional UPDATE, so several processes never both send."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("moderator"),
        on_delete=models.CASCADE,
        related_name="review_subscription",
    )
    created_at = models.DateTimeField(_("since"), default=timezone.now)
    last_notified_at = models.DateTimeField(_("last emailed"), null=True, blank=True)
    # Set when an upload was queued while the subscriber was throttled: a summary is owed.
    pending_since = models.DateTimeField(_("unsent news since"), null=True, blank=True)

    class Meta:
        verbose_name = _("review-queue email subscription")

    def __str__(self) -> str:
        return str(self.user)
