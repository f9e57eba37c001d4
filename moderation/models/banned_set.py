"""The banned set: named hash lists, the flags in them, each flag's variant fingerprints, and
the append-only change log every process's in-memory index replays.

Hashes are stored as signed 64-bit integers (two's complement of the unsigned dHash) because
that is what a BigIntegerField holds on every database; the admin shows them as 16 hex digits.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.models.quarantine import quarantine_storage
from moderation.variants import CHOICES as VARIANT_CHOICES

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
    pdq_distance = models.PositiveSmallIntegerField(
        _("PDQ distance"),
        default=31,
        help_text=_(
            "Bits (<=) within which an upload's PDQ matches this list's PDQ entries (of 256); "
            "31 is the distance PDQ's authors recommend."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    mode = models.CharField(_("mode"), max_length=10, choices=Mode.choices, default=Mode.ENFORCE)
    description = models.TextField(_("description"), blank=True)
    # Shown to people: the ground in the statement of reasons of a takedown by this list.
    public_description = models.CharField(
        _("public description"),
        max_length=300,
        blank=True,
        help_text=_(
            "What a person whose photo this list took down is told as the ground, e.g. "
            '"Sexual content". Never names the image or how close it was. Empty: a generic line.'
        ),
    )
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

    def held_by_flood_guard(self) -> FlaggedFingerprintQuerySet:
        return self.filter(active=True, flood_state=FLOOD_HELD)


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
    # The flood guard (``flood_guard``): a flag that matched more distinct users' photos in
    # a window than MODERATION_FLOOD_MAX_USERS is held: it matches in shadow (records, takes
    # nothing down, refuses nothing) until a moderator resumes it (the held takedowns then
    # run, and the guard no longer applies to it) or drops it (unflagged).
    flood_state = models.CharField(
        _("flood guard"),
        max_length=10,
        blank=True,
        default="",
        choices=[
            ("", _("not triggered")),
            ("held", _("held in shadow: waiting for a moderator")),
            ("resumed", _("resumed by a moderator")),
            ("dropped", _("dropped by a moderator")),
        ],
    )
    flood_held_at = models.DateTimeField(_("held by the flood guard at"), null=True, blank=True)
    # The last time a moderator looked at this flag's record and kept it (``desk.flag_rereview``):
    # a flag with poor precision leaves the dashboard's "Flags to re-review" until a decision
    # about one of its matches is judged after this.
    rereviewed_at = models.DateTimeField(_("re-reviewed at"), null=True, blank=True)
    rereviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("re-reviewed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
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
    # The image's verification signal (``verification.signal_of``), compared only with the
    # candidates the dHash + pHash rule matches: read from here for them, never held in memory.
    # Empty for a flag imported as bare hashes (or flagged before pipeline 6 and not reindexed):
    # its matches are decided by the rule alone.
    verification = models.BinaryField(
        _("verification signal"), default=b"", blank=True, editable=False
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

    @property
    def held(self) -> bool:
        """Held in shadow by the flood guard: matches are recorded, none enforced."""
        return self.flood_state == FLOOD_HELD


FLOOD_HELD = "held"


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
    # The variant's PDQ (64 hex digits) and PDQ's own quality score (0-100): what the banned
    # set is exported as. Empty for a flag imported as bare dHashes or older than pipeline 7.
    # db_default too: rows written without it (an older migration's data step, COPY) get "".
    pdq = models.CharField(_("PDQ"), max_length=64, blank=True, default="", db_default="")
    pdq_quality = models.PositiveSmallIntegerField(_("PDQ quality"), null=True, blank=True)

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
