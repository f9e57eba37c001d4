"""Hashes from outside: PDQ, MD5 and SHA-256 entries of hash lists, the imports that brought
them, and the change log every process's PDQ index replays.

A shared list (an exchange, a partner, a clearing house) is a list of hashes, not of images:
an entry is one hash of one signal type (``SignalType``), with where it came from. PDQ entries
match an upload within their list's ``HashList.pdq_distance``; MD5 and SHA-256 entries match
the uploaded bytes exactly. Entries are never deleted: a later import of the same list and
source that no longer carries one retracts it (``active`` off, with when and by which import).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation.models.banned_set import HashList
from moderation.models.quarantine import quarantine_storage


class SignalType(models.TextChoices):
    """The signal types entries can hold, named as python-threatexchange names them (its
    ``PdqSignal.get_name()`` is "pdq"; its byte hashes are "video_md5"/"video_sha256", which an
    import reads as "md5"/"sha256": the hash of the file's bytes, whatever the content)."""

    PDQ = "pdq", _("PDQ (256-bit perceptual)")
    MD5 = "md5", _("MD5 of the file")
    SHA256 = "sha256", _("SHA-256 of the file")


class SignalImport(models.Model):
    """One import of a hash file into one list, from one source: its progress and outcome.

    An import first reads the file into staging rows (``SignalImportRow``), a range of lines
    per committed step (``lines_done`` is the cursor, so a worker that dies resumes there), then
    applies them in one transaction: new hashes become entries, the entries of the same list and
    source that the file no longer carries are retracted. Until that transaction commits the
    list is unchanged; nothing is ever half-imported.
    """

    class State(models.TextChoices):
        READING = "reading", _("reading the file")
        APPLYING = "applying", _("applying")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    hash_list = models.ForeignKey(
        HashList, verbose_name=_("list"), on_delete=models.PROTECT, related_name="imports"
    )
    source = models.CharField(
        _("source"),
        max_length=100,
        blank=True,
        help_text=_("The partner or exchange the file came from; retractions stay within it."),
    )
    file_name = models.CharField(_("file"), max_length=300)
    # The file itself (private storage), so any worker can read it and resume.
    file = models.FileField(
        _("stored file"), storage=quarantine_storage, upload_to="signal-imports/", blank=True
    )
    format = models.CharField(_("format"), max_length=20)
    default_signal_type = models.CharField(
        _("signal type of bare 64-digit lines"),
        max_length=10,
        choices=SignalType.choices,
        default=SignalType.PDQ,
    )
    retract_missing = models.BooleanField(
        _("retract what the file no longer carries"), default=True
    )
    state = models.CharField(
        _("state"), max_length=10, choices=State.choices, default=State.READING, db_index=True
    )
    total_bytes = models.PositiveBigIntegerField(_("file size"), default=0)
    bytes_done = models.PositiveBigIntegerField(_("bytes read"), default=0)
    lines_done = models.PositiveIntegerField(_("lines read"), default=0)
    malformed = models.PositiveIntegerField(_("malformed lines"), default=0)
    # The first malformed lines, "line 12: not hex", one a line (the count says how many more).
    errors = models.TextField(_("malformed lines (first ones)"), blank=True)
    added = models.PositiveIntegerField(_("entries added"), default=0)
    unchanged = models.PositiveIntegerField(_("entries already there"), default=0)
    retracted = models.PositiveIntegerField(_("entries retracted"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("hash import")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import #{self.pk} of {self.file_name} into {self.hash_list_id}"


class SignalImportRow(models.Model):
    """One well-formed line of an import being read: staging, deleted when the import is
    applied (the entries are what stays)."""

    # No index and no database constraint here: staging rows are written by the million (COPY)
    # in the import's own steps and read once, whole; a constraint check per row doubled that.
    signal_import = models.ForeignKey(
        SignalImport,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    line = models.PositiveIntegerField()
    signal_type = models.CharField(max_length=10, choices=SignalType.choices)
    value = models.CharField(max_length=64)
    tags = models.CharField(max_length=500, blank=True)
    external_id = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"line {self.line}: {self.signal_type} {self.value}"


class SignalEntryQuerySet(models.QuerySet):
    def active(self) -> SignalEntryQuerySet:
        return self.filter(active=True)

    def in_force(self) -> SignalEntryQuerySet:
        """Active entries of lists that are switched on: what uploads are checked against."""
        return self.filter(active=True, hash_list__enabled=True)


class SignalEntry(models.Model):
    """One hash of a list: a PDQ, MD5 or SHA-256 (lowercase hex), with its provenance and the
    feedback an exchange asks for (how often it matched, how often moderators dismissed it)."""

    # Indexes and constraints are few on purpose: an import inserts a million rows, and each
    # index or per-row constraint check cost about as much as the row itself. One index finds an
    # active entry by its hash and keeps it unique per list and source; the import that added
    # an entry is indexed for the processes that replay it. The import links are written only
    # by the import, in its own transaction, and imports are never deleted (PROTECT), so they
    # carry no database constraint.
    hash_list = models.ForeignKey(
        HashList,
        verbose_name=_("list"),
        on_delete=models.PROTECT,
        related_name="signal_entries",
        db_index=False,
    )
    signal_type = models.CharField(_("signal type"), max_length=10, choices=SignalType.choices)
    value = models.CharField(_("hash (hex)"), max_length=64)
    quality = models.PositiveSmallIntegerField(
        _("PDQ quality"), null=True, blank=True, help_text=_("0-100 when known; empty for lists.")
    )
    tags = models.CharField(_("tags"), max_length=500, blank=True)
    source = models.CharField(_("source"), max_length=100, blank=True)
    external_id = models.CharField(_("id at the source"), max_length=200, blank=True)
    added_at = models.DateTimeField(_("added"), default=timezone.now)
    imported_by = models.ForeignKey(
        SignalImport,
        verbose_name=_("added by import"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="added_entries",
        db_constraint=False,
    )
    active = models.BooleanField(_("active"), default=True)
    retracted_at = models.DateTimeField(_("retracted"), null=True, blank=True)
    retracted_by = models.ForeignKey(
        SignalImport,
        verbose_name=_("retracted by import"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retracted_entries",
        db_index=False,
        db_constraint=False,
    )
    times_matched = models.PositiveIntegerField(_("matched"), default=0)
    times_dismissed = models.PositiveIntegerField(_("matches dismissed"), default=0)

    objects = SignalEntryQuerySet.as_manager()

    class Meta:
        verbose_name = _("hash list entry")
        verbose_name_plural = _("hash list entries")
        ordering = ["-added_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["signal_type", "value", "hash_list", "source"],
                condition=Q(active=True),
                name="one_active_entry_per_hash_list_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.signal_type} {self.value}"


class SignalChange(models.Model):
    """Append-only log of what changed the PDQ entries in force, replayed by every process's
    PDQ index before each lookup (as ``BannedSetChange`` is for dHash). Written under the
    banned-set writers' lock, so ids follow commit order. One row per event, not per entry:

    - ``entry`` set: that entry was added or retracted (read its row);
    - ``signal_import`` set: that import was applied (its added and retracted entries);
    - neither: ``hash_list``'s policy changed (distance, mode, on/off): read the list.
    """

    hash_list = models.ForeignKey(HashList, on_delete=models.PROTECT, related_name="+")
    entry = models.ForeignKey(
        SignalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    signal_import = models.ForeignKey(
        SignalImport, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("hash list change")

    def __str__(self) -> str:
        return f"hash list change #{self.pk}"
