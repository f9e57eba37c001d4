"""The banned set, its change log, the audit trail and reindex progress.

Hashes are stored as signed 64-bit integers (two's complement of the unsigned dHash) because
that is what a BigIntegerField holds on every database; the admin shows them as 16 hex digits.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext_lazy as _

from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.variants import CHOICES as VARIANT_CHOICES


class QuarantineStorage(LazyObject):
    """``storages["quarantine"]``, resolved on first use like Django's ``default_storage``.

    A FileField resolves its storage once, at import; being lazy means a changed STORAGES
    setting (tests, or a deployment switching to S3) is honoured without a migration.
    """

    def _setup(self) -> None:
        self._wrapped = storages["quarantine"]


_quarantine = QuarantineStorage()


@receiver(setting_changed)
def _forget_quarantine_storage(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        _quarantine._wrapped = empty


def quarantine_storage() -> QuarantineStorage:
    """Private storage for flagged originals and taken-down photos (never given a public URL)."""
    return _quarantine


DEFAULT_HASH_LIST = "default"


class HashList(models.Model):
    """A named list of banned fingerprints ("nudity", "spam", "imported from partner X").

    Each list has its own dHash distance (empty: ``MODERATION_MAX_DISTANCE``; at most
    ``MODERATION_REVIEW_DISTANCE``, which is how far every lookup reaches), an on/off switch
    (a list that is off matches nothing, its flags stay) and a mode: ``enforce`` blocks,
    ``shadow`` only records what it would have blocked, so a moderator sees the effect of a new
    list or a changed distance before enforcing it. Changed only through ``services``, which
    logs the change so every process's index follows.
    """

    class Mode(models.TextChoices):
        ENFORCE = "enforce", _("Enforce (block matching uploads)")
        SHADOW = "shadow", _("Shadow (record what it would block, block nothing)")

    name = models.CharField(_("name"), max_length=100, unique=True)
    max_distance = models.PositiveSmallIntegerField(
        _("dHash distance"),
        null=True,
        blank=True,
        help_text=_(
            "Bits (<=) within which an upload matches this list; empty: the site's "
            "MODERATION_MAX_DISTANCE. At most MODERATION_REVIEW_DISTANCE."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    mode = models.CharField(_("mode"), max_length=10, choices=Mode.choices, default=Mode.ENFORCE)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # A distance on trial: while set, an enforced list still blocks at ``max_distance``, and
    # every accepted upload the proposed distance would block or queue (and the current one
    # does not) is recorded as a ``ShadowHit`` of kind "distance". Promoted or discarded
    # through ``services``; never larger than ``MODERATION_REVIEW_DISTANCE`` either.
    proposed_distance = models.PositiveSmallIntegerField(
        _("proposed dHash distance (on trial)"),
        null=True,
        blank=True,
        help_text=_(
            "Recorded, not enforced: uploads this distance would block that the current one "
            "lets through are listed under Shadow hits. Promote it or discard it."
        ),
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("proposed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    proposed_at = models.DateTimeField(_("proposed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("hash list")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shadow(self) -> bool:
        return self.mode == self.Mode.SHADOW

    @property
    def effective_distance(self) -> int:
        """The dHash distance the list blocks at now (its own, or the site's)."""
        return moderation_settings.MAX_DISTANCE if self.max_distance is None else self.max_distance


def default_hash_list_id() -> int:
    """The list a flag joins when nobody names one (created on first use).

    Reads only the id: migration 0004 calls this while the table still has the columns of
    that time, so selecting every field of today's model would fail there.
    """
    found = HashList.objects.filter(name=DEFAULT_HASH_LIST).values_list("pk", flat=True).first()
    if found is not None:
        return found
    return HashList.objects.get_or_create(name=DEFAULT_HASH_LIST)[0].pk


class FlaggedFingerprintQuerySet(models.QuerySet):
    def active(self) -> FlaggedFingerprintQuerySet:
        return self.filter(active=True)

    def with_hex(self, hex_text: str) -> FlaggedFingerprintQuerySet:
        return self.filter(dhash=Fingerprint.from_hex(hex_text).signed)


class FlaggedFingerprint(models.Model):
    """An image a moderator has banned: one flag, with a fingerprint per variant.

    ``dhash`` is the upright image's dHash (what the admin shows and searches); the fingerprints
    that are matched -- the 8 orientations and a few crops of the image (``variants.VARIANTS``),
    with their confirming pHashes -- are its ``variants``.
    Unflagging deactivates the row (and so every variant); it is never deleted, so the audit
    trail always points at something. At most one *active* row exists per upright hash: a second
    flag of the same image adds an audit event, not a second flag.
    """

    class Source(models.TextChoices):
        PROFILE_PHOTO = "profile_photo", _("Profile photo")
        ADMIN_UPLOAD = "admin_upload", _("Uploaded in the admin")
        COMMAND = "command", _("Imported by command")
        IMPORT = "import", _("Imported hash list")

    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"), db_index=True)
    hash_list = models.ForeignKey(
        HashList,
        verbose_name=_("list"),
        on_delete=models.PROTECT,
        related_name="fingerprints",
        default=default_hash_list_id,
    )
    pipeline_version = models.PositiveSmallIntegerField(_("pipeline version"))
    information = models.PositiveSmallIntegerField(
        _("information (bits)"),
        null=True,
        blank=True,
        help_text=_(
            "How many of the 64 dHash bits carry information (hashing.py); below "
            "MODERATION_MIN_INFORMATION a match never blocks an upload on its own. Empty for "
            "flags older than pipeline version 3."
        ),
    )
    reason = models.TextField(_("reason"), blank=True)
    source = models.CharField(_("source"), max_length=20, choices=Source.choices)
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("flagged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    flagged_at = models.DateTimeField(_("flagged at"), default=timezone.now, db_index=True)
    active = models.BooleanField(_("active"), default=True, db_index=True)
    suspended = models.BooleanField(
        _("suspended"),
        default=False,
        help_text=_(
            "Deactivated automatically because moderators dismissed too many of its matches "
            "(MODERATION_MAX_DISMISSALS): probably a false positive magnet. Check it."
        ),
    )
    unflagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("unflagged by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    unflagged_at = models.DateTimeField(_("unflagged at"), null=True, blank=True)
    original = models.FileField(
        _("original (private)"), storage=quarantine_storage, upload_to="originals/", blank=True
    )

    objects = FlaggedFingerprintQuerySet.as_manager()

    class Meta:
        verbose_name = _("flagged fingerprint")
        ordering = ["-flagged_at", "-id"]
        permissions = [
            ("flag_image", _("Can flag images into the banned set")),
            ("unflag_image", _("Can unflag banned fingerprints")),
            ("view_quarantine", _("Can view quarantined originals")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["dhash"], condition=Q(active=True), name="one_active_fingerprint_per_hash"
            )
        ]

    def __str__(self) -> str:
        return self.hex

    @property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint.from_signed(
            self.dhash, self.pipeline_version, information=self.information
        )

    @property
    def hex(self) -> str:
        return self.fingerprint.hex


class FingerprintVariant(models.Model):
    """One variant's fingerprint of a flag (an orientation or a crop of the flagged image, by
    its number in ``variants.VARIANTS``): what the banned-set index actually matches.

    A variant whose dHash and pHash equal an earlier one's (the orientations of a symmetric
    image) is not stored again. Written and replaced only together with their flag (same
    pipeline version), by ``services``. ``phash`` is empty for a flag from before pipeline
    version 3 that ``reindex`` could not recompute (no kept original); such a flag, and one
    imported from a hash list of bare hashes, has no crop variants (they need the pixels).
    """

    flagged = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("flag"),
        on_delete=models.PROTECT,
        related_name="variants",
    )
    # The column kept its name from when every variant was an orientation (numbers 0-7 are).
    variant = models.PositiveSmallIntegerField(
        _("variant"), choices=VARIANT_CHOICES, db_column="orientation"
    )
    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"), db_index=True)
    phash = models.BigIntegerField(_("pHash (signed 64-bit)"), null=True, blank=True)

    class Meta:
        verbose_name = _("fingerprint variant")
        ordering = ["flagged", "variant"]
        constraints = [
            models.UniqueConstraint(fields=["flagged", "variant"], name="one_row_per_variant")
        ]

    def __str__(self) -> str:
        return f"{self.hex} ({self.get_variant_display()})"

    @property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint.from_signed(self.dhash, phash=self.phash)

    @property
    def hex(self) -> str:
        return self.fingerprint.hex


class BannedSetChange(models.Model):
    """Append-only log of every change to the active banned set.

    Each process's in-memory index replays the rows after the last id it has seen before it
    answers a lookup: one primary-key range query, empty when nothing changed. Writers take a
    lock (see ``services``) so ids are assigned in commit order and no change is skipped.
    One row per stored variant of a flag, carrying everything the index keeps for it, so
    replaying needs no other table.
    """

    fingerprint = models.ForeignKey(FlaggedFingerprint, on_delete=models.PROTECT, related_name="+")
    # The number in variants.VARIANTS (column named from when variants were orientations).
    variant = models.PositiveSmallIntegerField(default=0, db_column="orientation")
    dhash = models.BigIntegerField()
    phash = models.BigIntegerField(null=True, blank=True)
    information = models.PositiveSmallIntegerField(null=True, blank=True)
    active = models.BooleanField()  # the flag is active AND its list is enabled
    # The flag's list policy at the time: its distance (NULL: the setting) and shadow mode.
    max_distance = models.PositiveSmallIntegerField(null=True, blank=True)
    shadow = models.BooleanField(default=False)
    # ...and the distance on trial (``HashList.proposed_distance``), if any.
    proposed_distance = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("banned set change")

    def __str__(self) -> str:
        state = "on" if self.active else "off"
        return f"change #{self.pk}: flag {self.fingerprint_id}/{self.variant} {state}"


class AuditEvent(models.Model):
    """Who did what to which image, when and why. Append-only: never edited or deleted."""

    class Action(models.TextChoices):
        FLAG = "flag", _("Flagged")
        UNFLAG = "unflag", _("Unflagged")
        TAKEDOWN = "takedown", _("Taken down")
        MISSING = "missing", _("File missing from storage")
        DISMISS = "dismiss", _("Review dismissed (allowed)")
        SUSPEND = "suspend", _("Suspended after too many dismissals")
        REVOKE = "revoke", _("Allowlist exception revoked")
        PROPOSE = "propose", _("List distance proposed (on trial)")
        PROMOTE = "promote", _("Proposed list distance enforced")
        DISCARD = "discard", _("Proposed list distance discarded")

    action = models.CharField(_("action"), max_length=20, choices=Action.choices, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("Empty when the system acted (sweep, command without a user)."),
    )
    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("fingerprint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="audit_events",
    )
    target = models.CharField(
        _("target"), max_length=200, blank=True, help_text=_("What was acted on, e.g. a profile.")
    )
    distance = models.PositiveSmallIntegerField(_("distance"), null=True, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    evidence = models.FileField(
        _("evidence (private)"), storage=quarantine_storage, upload_to="takedowns/", blank=True
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("audit event")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.target or ''} {self.created_at:%Y-%m-%d %H:%M}"


class ReindexRun(models.Model):
    """Progress of one `manage.py reindex`, so an interrupted run resumes where it stopped."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pipeline_version = models.PositiveSmallIntegerField()
    # One cursor per kind of stored image, e.g. {"profiles.profile.photo": 1234}.
    cursors = models.JSONField(default=dict)
    counts = models.JSONField(default=dict)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "in progress"
        return f"reindex {self.started_at:%Y-%m-%d %H:%M} ({state})"


class RefusedUploadQuerySet(models.QuerySet):
    def banned_matches(self) -> RefusedUploadQuerySet:
        return self.filter(code="banned_image")


class RefusedUpload(models.Model):
    """One upload the site refused: who, from where, why, and (staff-only) what it was near.

    Someone probing the threshold uploads edited copies of a banned image until one passes;
    each try leaves a row here, so moderators see the pattern (count per user in the admin).
    The nearest banned fingerprint and the distance are never shown to the user. Append-only.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    code = models.CharField(
        _("reason code"),
        max_length=40,
        db_index=True,
        help_text=_("banned_image, or why the file was not an acceptable image (corrupt, ...)."),
    )
    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"), null=True, blank=True)
    nearest = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("nearest banned fingerprint"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    distance = models.PositiveSmallIntegerField(_("distance"), null=True, blank=True)
    # What of the upload was that near (``matching.Match.found_by``): the whole image, one of
    # its cuts or the picture inside its frame; ``dhash`` is the hash of that.
    found_by = models.CharField(_("found by"), max_length=60, blank=True, default="")

    objects = RefusedUploadQuerySet.as_manager()

    class Meta:
        verbose_name = _("refused upload")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="refused_by_user")]

    def __str__(self) -> str:
        return f"{self.code} {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def hex(self) -> str:
        return "" if self.dhash is None else Fingerprint.from_signed(self.dhash).hex


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
        SWEEP = "sweep", _("a sweep after a flag")

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
        on_delete=models.PROTECT,
        related_name="review_items",
    )
    distance = models.PositiveSmallIntegerField(_("dHash distance"))
    confirm_distance = models.PositiveSmallIntegerField(
        _("pHash distance"), null=True, blank=True
    )
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
            )
        ]

    def __str__(self) -> str:
        return f"{self.target or self.file_name} near {self.fingerprint}"

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


class ShadowHit(models.Model):
    """What a trial would have done to one accepted upload, for one fingerprint. Append-only.

    Two kinds: a fingerprint of a shadow-mode list matched (``LIST``: it would have been
    blocked; moderators read these before switching the list to enforce), or a proposed
    distance of an enforced list (``DISTANCE``, ``HashList.proposed_distance``) would have
    blocked or queued an upload that the list's current distance lets through.
    """

    class Kind(models.TextChoices):
        LIST = "list", _("shadow list")
        DISTANCE = "distance", _("proposed distance")

    class Outcome(models.TextChoices):
        BLOCK = "block", _("blocked")
        REVIEW = "review", _("queued for review")

    hash_list = models.ForeignKey(
        HashList, verbose_name=_("list"), on_delete=models.PROTECT, related_name="shadow_hits"
    )
    fingerprint = models.ForeignKey(
        FlaggedFingerprint,
        verbose_name=_("fingerprint"),
        on_delete=models.PROTECT,
        related_name="shadow_hits",
    )
    target_key = models.CharField(_("kind of image"), max_length=100)
    object_id = models.PositiveBigIntegerField(_("object id"))
    target = models.CharField(_("target"), max_length=200, blank=True)
    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"))
    distance = models.PositiveSmallIntegerField(_("dHash distance"))
    confirm_distance = models.PositiveSmallIntegerField(
        _("pHash distance"), null=True, blank=True
    )
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("uploader"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    kind = models.CharField(
        _("trial"), max_length=10, choices=Kind.choices, default=Kind.LIST, db_index=True
    )
    outcome = models.CharField(
        _("would be"), max_length=10, choices=Outcome.choices, default=Outcome.BLOCK
    )
    # For a DISTANCE hit: the distance on trial and the one enforced when it was recorded.
    proposed_distance = models.PositiveSmallIntegerField(
        _("proposed distance"), null=True, blank=True
    )
    enforced_distance = models.PositiveSmallIntegerField(
        _("enforced distance"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("shadow hit")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.hash_list}: {self.target} {self.label}"

    @property
    def label(self) -> str:
        """What the trial would have done, e.g. "would be blocked at proposed distance 14"."""
        if self.kind == self.Kind.DISTANCE:
            if self.outcome == self.Outcome.REVIEW:
                return f"would be queued at proposed distance {self.proposed_distance}"
            return f"would be blocked at proposed distance {self.proposed_distance}"
        return "would be blocked (shadow list)"
