"""Operations' bookkeeping: reindex runs, the ranges workers take, and every sweep's state.

The task queue in PostgreSQL coordinates the workers; these rows are what each task commits with
its work (a range's cursor and counts, a sweep's state), so a task that runs again after its
worker died resumes from what was committed, and the operator and the moderators see where the
work stands instead of a promise.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _


class ReindexRun(models.Model):
    """One reindex: its ranges (``WorkRange``), then its full sweep (``Sweep``), then closed.

    ``phase`` moves reindexing → sweeping → done exactly once each, under this row's lock, so
    two workers finishing the last two ranges together start one sweep."""

    class Phase(models.TextChoices):
        REINDEXING = "reindexing", _("re-fingerprinting")
        SWEEPING = "sweeping", _("sweeping")
        DONE = "done", _("done")

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pipeline_version = models.PositiveSmallIntegerField()
    # Before ranges: one cursor per kind of stored image, e.g. {"profiles.profile.photo": 1234}.
    cursors = models.JSONField(default=dict)
    # The run's totals, written when it closes (or "abandoned" when --restart gave it up).
    counts = models.JSONField(default=dict)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.REINDEXING)
    sweep_after = models.BooleanField(default=True, help_text=_("Sweep when the reindex finishes."))
    batch_size = models.PositiveIntegerField(default=200)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "in progress"
        when = date_format(localtime(self.started_at), "SHORT_DATETIME_FORMAT")
        return f"reindex {when} ({state})"


class Sweep(models.Model):
    """One sweep of stored images against the banned set: after a flag (its ``fingerprints``)
    or full (none: the whole banned set, e.g. after a reindex, in ranges). Created queued in
    the transaction that makes it owed, so it is visible from the moment it is promised."""

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    fingerprints = models.ManyToManyField(
        "moderation.FlaggedFingerprint", related_name="sweeps", blank=True
    )
    full = models.BooleanField(default=False, help_text=_("The whole banned set."))
    run = models.ForeignKey(
        ReindexRun, null=True, blank=True, on_delete=models.CASCADE, related_name="sweeps"
    )
    # A list sweep (``list_sweep``): stored images' PDQ, MD5 and SHA-256 against entries of
    # this list: those ``signal_import`` added, else those of ``signal_entry_ids``, else every
    # active one (the list was switched on or to enforce).
    hash_list = models.ForeignKey(
        "moderation.HashList",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="list_sweeps",
    )
    signal_import = models.ForeignKey(
        "moderation.SignalImport",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="sweeps",
    )
    signal_entry_ids = models.JSONField(default=list, blank=True)
    # False for the sweep a moderator started by switching a held list back to enforce.
    guarded = models.BooleanField(
        default=True, help_text=_("The flood guard may hold the list during this sweep.")
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    checked = models.PositiveIntegerField(default=0)
    taken_down = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0, help_text=_("Near misses sent to review."))
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        what = "full sweep" if self.full else "list sweep" if self.hash_list_id else "sweep"
        return f"{what} #{self.pk} ({self.state})"


class WorkRange(models.Model):
    """A range of primary keys of one kind of stored image, for one task: re-fingerprinted
    (``run`` set, ``sweep`` empty) or swept (``sweep`` set). ``cursor`` is the last pk whose
    work is committed; it is committed with that work and the counts, so a re-run resumes
    after it and never repeats committed work."""

    run = models.ForeignKey(
        ReindexRun, null=True, blank=True, on_delete=models.CASCADE, related_name="ranges"
    )
    sweep = models.ForeignKey(
        Sweep, null=True, blank=True, on_delete=models.CASCADE, related_name="ranges"
    )
    kind = models.CharField(max_length=200)  # reindex.ORIGINALS_KEY or a registry target key
    lo = models.BigIntegerField()
    hi = models.BigIntegerField()
    rows = models.PositiveIntegerField(help_text=_("Rows in the range when it was planned."))
    cursor = models.BigIntegerField(default=0)
    done = models.BooleanField(default=False)
    processed = models.PositiveIntegerField(default=0)  # rows read (reindex) or checked (sweep)
    changed = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    unreadable = models.PositiveIntegerField(default=0)
    taken_down = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["run", "done"]), models.Index(fields=["sweep", "done"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.lo}–{self.hi}"
