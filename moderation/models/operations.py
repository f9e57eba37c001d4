"""Operations' bookkeeping: the progress of reindex runs, so an interrupted one resumes."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
