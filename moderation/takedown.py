"""The takedown itself: a stored photo moved to quarantine, cleared, audited, its owner told.

Shared by every automatic takedown, by a flag (``sweeping.take_down_image``) or by a hash
list's entry (``list_takedowns.take_down_by_entry``), so each keeps the same evidence and
sends the same statement of reasons. The caller decides and locks; this only acts.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from moderation import notices, registry
from moderation.files import (
    copy_to_quarantine,
    delete_from_quarantine,
    remove_banned_copy_after_commit,
    storage_errors,
)
from moderation.models import AuditEvent, FlaggedFingerprint, SignalEntry


def move_to_quarantine(
    locked: models.Model,
    *,
    target: registry.ImageTarget,
    distance: int,
    label: str,
    expected: int,
    flagged: FlaggedFingerprint | None = None,
    entry: SignalEntry | None = None,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> None:
    """The takedown itself, inside the caller's transaction with ``locked`` (the image's row,
    locked, still holding ``expected``): quarantine, clear, audit, and the owner's statement
    of reasons. By a flag (``sweeping.take_down_image``) or by a hash list's entry
    (``list_takedowns.take_down_by_entry``)."""
    image = target.image(locked)
    public_name = image.name
    try:
        with storage_errors(), image.open("rb") as fh:
            stored = copy_to_quarantine(fh, "takedowns")
    except FileNotFoundError:
        stored = ""  # already gone from storage: clear the row, record that in the audit
        reason = f"{reason} (file was missing from storage)".strip()
    try:
        target.clear(locked)
        event = AuditEvent.objects.create(
            action=AuditEvent.Action.TAKEDOWN,
            actor=actor,
            fingerprint=flagged,
            signal_entry=entry,
            target=label,
            distance=distance,
            reason=reason or (flagged.reason if flagged is not None else ""),
            evidence=stored,
        )
        notices.notify_takedown(
            instance=locked,
            flagged=flagged,
            entry=entry,
            dhash=expected,
            event=event,
            kept_file=stored,
        )
    except BaseException:
        if stored:
            delete_from_quarantine(stored)
        raise
    if stored:
        remove_banned_copy_after_commit(image.storage, public_name)
