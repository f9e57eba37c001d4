"""The desk's records of what happened: the audit trail, refused uploads and what trials
(shadow lists, proposed distances) would have done. All append-only, written by the flows.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from moderation.hashing import Fingerprint
from moderation.matching import name_variant
from moderation.models.banned_set import FlaggedFingerprint, HashList
from moderation.models.quarantine import quarantine_storage

decisions_logger = logging.getLogger("moderation.decisions")


class AuditEventManager(models.Manager):
    """The one way into the audit trail, so every decision is also a log event: once its
    transaction commits (a rolled-back flag was never decided), as one structured line for
    the operators' log tools. Ids, the action, the target and the reason; never a file."""

    def create(self, **kwargs) -> AuditEvent:
        event = super().create(**kwargs)
        transaction.on_commit(lambda: log_decision(event), using=self.db)
        return event


def log_decision(event: AuditEvent) -> None:
    decisions_logger.info(
        "%s %s",
        event.get_action_display(),
        event.target or f"fingerprint #{event.fingerprint_id}",
        extra={
            "event": f"moderation.{event.action}",
            "audit_event_id": event.pk,
            "actor_id": event.actor_id,
            "fingerprint_id": event.fingerprint_id,
            "target": event.target,
            "distance": event.distance,
            "reason": event.reason,
        },
    )


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
        RETRY_TASK = "retry_task", _("Failed background task queued again")
        APPEAL = "appeal", _("Appeal filed")
        UPHOLD = "uphold", _("Appeal upheld (decision stands)")
        OVERTURN = "overturn", _("Appeal overturned (decision reversed)")
        RESTORE = "restore", _("Photo restored from its kept copy")
        PURGE = "purge", _("Kept copy of a taken-down photo purged")
        REPORT_DISMISS = "report_dismiss", _("Reported photo dismissed (stays)")
        IMPORT = "import", _("Hash list imported")
        RETRACT = "retract", _("Hash list entries retracted")
        TOKEN_ISSUE = "token_issue", _("API token issued")
        TOKEN_REVOKE = "token_revoke", _("API token revoked")
        FLOOD_HOLD = "flood_hold", _("Flag held in shadow by the flood guard")
        FLOOD_RESUME = "flood_resume", _("Held flag resumed (takedowns run)")
        FLOOD_DROP = "flood_drop", _("Held flag dropped (unflagged)")
        LIST_FLOOD_HOLD = "list_flood_hold", _("Hash list held in shadow by the flood guard")
        LIST_FLOOD_RESUME = (
            "list_flood_resume",
            _("Held hash list switched back to enforce (swept unguarded)"),
        )
        LIST_FLOOD_DROP = "list_flood_drop", _("Held hash list dropped (left in shadow)")
        REREVIEW = "rereview", _("Flag re-reviewed and kept")
        ESCALATE = "escalate", _("Uploader escalated as a prober")
        ESCALATION_CLOSE = "escalation_close", _("Prober escalation closed")
        TWO_FACTOR_ENROL = "2fa_enrol", _("Two-factor device enrolled")
        TWO_FACTOR_VERIFY = "2fa_verify", _("Two-factor code verified")
        TWO_FACTOR_FAILED = "2fa_failed", _("Wrong two-factor code")
        TWO_FACTOR_RECOVERY = "2fa_recovery", _("Recovery codes replaced")
        TWO_FACTOR_REVOKE = "2fa_revoke", _("Own two-factor devices revoked")
        TWO_FACTOR_RESET = "2fa_reset", _("Two-factor reset by a superuser")
        EMAIL_REQUEST = "email_request", _("New email address given (link sent)")
        EMAIL_CONFIRM = "email_confirm", _("New email address confirmed")
        NAME_CHANGE = "name_change", _("Own name changed")

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
    # A takedown by a hash list's entry (a list sweep) names the entry instead of a flag.
    signal_entry = models.ForeignKey(
        "moderation.SignalEntry",
        verbose_name=_("list entry"),
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

    objects = AuditEventManager()

    class Meta:
        verbose_name = _("audit event")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        when = date_format(localtime(self.created_at), "SHORT_DATETIME_FORMAT")
        return f"{self.get_action_display()} {self.target or ''} {when}"


class RefusedUploadQuerySet(models.QuerySet):
    def banned_matches(self) -> RefusedUploadQuerySet:
        return self.filter(code="banned_image")

    def with_thumbnail(self) -> RefusedUploadQuerySet:
        return self.filter(thumbnail__isnull=False)


class RefusedUpload(models.Model):
    """One upload the site refused: who, from where, why, and (staff-only) what it was near.

    Someone probing the threshold uploads edited copies of a banned image until one passes;
    each try leaves a row here, so moderators see the pattern (count per user in the admin).
    The nearest banned fingerprint and the distance are never shown to the user. Append-only,
    but for the thumbnail of the refused picture, which the keep period's purge empties.
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
    signal_entry = models.ForeignKey(
        "moderation.SignalEntry",
        verbose_name=_("matched list entry (PDQ, MD5, SHA-256)"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # What of the upload was that near (``matching.Match.found_by_kind``: whole, cut or
    # frame; ``dhash`` is the hash of that), or which list's entry refused it; with
    # ``variant``, which of the flag's variants it matched. Both are named for staff by
    # ``matching.name_variant`` (``variant_name``), as ``check_image`` names them.
    found_by = models.CharField(_("found by"), max_length=60, blank=True, default="")
    variant = models.PositiveSmallIntegerField(_("matched variant"), null=True, blank=True)
    # A refusal by a match keeps a small JPEG of the refused picture (``moderation.thumbnails``)
    # here, not in storage: evidence for moderators, served only through the permission-checked
    # ``refusal_thumbnail`` view, emptied (None) by the keep period's purge.
    thumbnail = models.BinaryField(
        _("thumbnail of the refused picture (private)"), null=True, blank=True, editable=False
    )

    objects = RefusedUploadQuerySet.as_manager()

    class Meta:
        verbose_name = _("refused upload")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="refused_by_user")]

    def __str__(self) -> str:
        when = date_format(localtime(self.created_at), "SHORT_DATETIME_FORMAT")
        return f"{self.code} {when}"

    @property
    def hex(self) -> str:
        return "" if self.dhash is None else Fingerprint.from_signed(self.dhash).hex

    @property
    def variant_name(self) -> str:
        """What matched, named as everywhere else (``matching.name_variant``); '' when the
        refusal matched nothing (an unreadable file)."""
        if not self.found_by:
            return ""
        return name_variant(variant=self.variant, found_by=self.found_by)


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
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="shadow_hits",
    )
    # ...or the list entry (PDQ, MD5, SHA-256) that matched; one of the two is set.
    signal_entry = models.ForeignKey(
        "moderation.SignalEntry",
        verbose_name=_("list entry"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="shadow_hits",
    )
    target_key = models.CharField(_("kind of image"), max_length=100)
    object_id = models.PositiveBigIntegerField(_("object id"))
    target = models.CharField(_("target"), max_length=200, blank=True)
    dhash = models.BigIntegerField(_("dHash (signed 64-bit)"))
    distance = models.PositiveSmallIntegerField(_("dHash distance"))
    confirm_distance = models.PositiveSmallIntegerField(_("pHash distance"), null=True, blank=True)
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
