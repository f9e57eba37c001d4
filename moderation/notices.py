"""Notices: the statement of reasons a person gets when their photo is taken down or refused.

Shaped on the EU Digital Services Act's Art. 17: what happened, on what ground, when, and how
to appeal. The ground is the list's public description (``HashList.public_description``),
never which image matched or how close; a refusal's ground is one generic line for every list,
so a notice helps nobody probe the banned set. A takedown's notice is written in the
takedown's transaction (``sweeping.take_down_image``, ``flagging.flag_stored_image``) and
emailed, once, to a person who gave a verified address; a refusal's is shown on the page.

A taken-down photo's private copy is kept ``MODERATION_TAKEDOWN_KEEP_DAYS`` so an overturned
appeal can put it back, then purged (``purge_kept_takedowns``, a task that may run any number
of times). The thumbnail a refusal keeps of the refused picture, in its row, is emptied after
the same period by the same task (``purge_refusal_thumbnails``).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.tasks import task
from django.urls import reverse
from django.utils import timezone

from moderation import background, registry, review
from moderation.conf import moderation_settings
from moderation.files import storage_errors
from moderation.models import (
    Appeal,
    AuditEvent,
    EmailDelivery,
    FlaggedFingerprint,
    Notice,
    RefusedUpload,
    SignalEntry,
    quarantine_storage,
)

GENERIC_GROUND = "It matches an image our moderators have banned from profile photos."
# A refusal names no list: which list refused an upload would tell a prober what was near.
REFUSAL_GROUND = (
    "It matches, or is very close to, an image our moderators have banned from profile photos."
)


def ground_of(by: FlaggedFingerprint | SignalEntry) -> str:
    """The ground a takedown by ``by`` (a flag or a list's entry) is given: its list's public
    description."""
    return by.hash_list.public_description.strip() or GENERIC_GROUND


def notice_url(notice: Notice) -> str:
    """The absolute link to the notice (and its appeal form), for emails."""
    return moderation_settings.SITE_URL.rstrip("/") + reverse("notice-detail", args=[notice.pk])


def notify_takedown(
    *,
    instance: models.Model,
    flagged: FlaggedFingerprint | None,
    dhash: int,
    event: AuditEvent,
    kept_file: str,
    entry: SignalEntry | None = None,
) -> Notice | None:
    """Write the statement of reasons for a takedown of ``instance``'s image by ``flagged`` or
    by a list's ``entry``, inside the takedown's transaction, and owe its owner an email if
    they have a verified address.

    ``dhash`` is the taken-down image's own dHash and ``kept_file`` its private copy (empty
    when the file was already gone). None when the image has no owner to tell."""
    target = registry.target_for(instance)
    owner_id = target.owner_id(instance)
    if owner_id is None:
        return None
    owner = get_user_model()._default_manager.get(pk=owner_id)
    notice = Notice.objects.create(
        kind=Notice.Kind.TAKEDOWN,
        user=owner,
        ground=ground_of(flagged if flagged is not None else entry),
        fingerprint=flagged,
        signal_entry=entry,
        dhash=dhash,
        target_key=target.key,
        object_id=instance.pk,
        target=target.label(instance),
        kept_file=kept_file,
        takedown=event,
        created_at=event.created_at,
    )
    review.owe_email(
        kind=EmailDelivery.Kind.NOTICE,
        user=owner,
        subject="Your profile photo was taken down",
        body=_takedown_body(notice),
    )
    if kept_file:
        schedule_purge(notice.created_at + keep_period())
    return notice


def _takedown_body(notice: Notice) -> str:
    return (
        f"On {notice.created_at:%Y-%m-%d at %H:%M} UTC your profile photo was taken down and "
        "is no longer shown.\n\n"
        f"Why: {notice.ground}\n\n"
        "The decision was made by matching your photo with images our moderators have "
        "banned. If you think this is a mistake, you can appeal once, in a few words; a "
        "moderator will look at it and tell you the outcome. If the appeal succeeds, your "
        "photo is put back.\n\n"
        f"Read the notice and appeal: {notice_url(notice)}\n"
    )


def notify_restored(notice: Notice) -> None:
    """Tell the owner of a photo put back without an appeal (its flag was withdrawn): by email
    to a verified address; the profile page shows it beside the notice."""
    review.owe_email(
        kind=EmailDelivery.Kind.NOTICE,
        user=notice.user,
        subject="Your profile photo is back",
        body=(
            f"Your profile photo, taken down on {notice.created_at:%Y-%m-%d}, is back on your "
            "profile: our moderators withdrew the ban it was matched with.\n\n"
            f"The notice: {notice_url(notice)}\n"
        ),
    )


def notify_refusal(
    *, user, refused: RefusedUpload, dhash: int | None, flagged_id: int | None
) -> Notice | None:
    """Write the statement of reasons for a refused upload of ``user`` (signed in), so they can
    contest it. No file is kept, only the refusal's thumbnail in its row (docs/appeals.md);
    ``dhash`` is the refused image's own dHash, which an overturn allows for the flag. None for
    a refusal that was not a match (a corrupt file) or of nobody signed in."""
    if dhash is None or flagged_id is None or not getattr(user, "is_authenticated", False):
        return None
    return Notice.objects.create(
        kind=Notice.Kind.REFUSAL,
        user=user,
        ground=REFUSAL_GROUND,
        fingerprint_id=flagged_id,
        dhash=dhash,
        refused_upload=refused,
        created_at=refused.created_at,
    )


# --- keeping and purging taken-down photos ---------------------------------------------------


def keep_period() -> timedelta:
    return timedelta(days=moderation_settings.TAKEDOWN_KEEP_DAYS)


def purge_kept_takedowns(*, now=None) -> int:
    """Delete the private copies of taken-down photos older than the keep period, except
    those under an open appeal and a flag's own original (that is the flag's, kept for
    verification and reindex). Each purge is audited. Returns how many were purged.

    Safe to run twice and from several workers: each notice is claimed with a conditional
    UPDATE before its file is deleted, in one transaction (a storage failure rolls the claim
    back, and the next run tries again; deleting a file already gone is not an error)."""
    now = now or timezone.now()
    purged = 0
    due = Notice.objects.purgeable(now - keep_period()).values_list("pk", "kept_file")
    for pk, name in list(due):
        with transaction.atomic():
            claimed = (
                Notice.objects.purgeable(now - keep_period()).filter(pk=pk).update(purged_at=now)
            )
            if not claimed:
                continue
            if not FlaggedFingerprint.objects.filter(original=name).exists():
                with storage_errors():
                    quarantine_storage().delete(name)
            notice = Notice.objects.get(pk=pk)
            AuditEvent.objects.create(
                action=AuditEvent.Action.PURGE,
                fingerprint_id=notice.fingerprint_id,
                target=notice.target,
                reason=f"kept {moderation_settings.TAKEDOWN_KEEP_DAYS} days after the takedown",
            )
        purged += 1
    return purged


def purge_refusal_thumbnails(*, now=None) -> int:
    """Empty the thumbnails refusals keep of the refused picture once they are older than the
    keep period, except a refusal under an open appeal (the moderator still needs it; its
    decision schedules the purge). One UPDATE: safe to run twice and from several workers.
    Returns how many were emptied."""
    now = now or timezone.now()
    return refusal_thumbnails_due(now - keep_period()).update(thumbnail=None)


def refusal_thumbnails_due(before):
    """Refusals that keep a thumbnail recorded before ``before``, not under an open appeal."""
    return (
        RefusedUpload.objects.with_thumbnail()
        .filter(created_at__lt=before)
        .exclude(pk__in=_appealed_refusals())
    )


def _appealed_refusals():
    return Notice.objects.filter(
        kind=Notice.Kind.REFUSAL, appeal__status=Appeal.Status.OPEN
    ).values("refused_upload_id")


# A purge due after a keep period of days may start this much late: refusals on two servers a
# moment apart then share one waiting run.
PURGE_SLACK = timedelta(minutes=5)


def schedule_purge(when) -> None:
    """With a worker backend, make sure a purge runs by the end of this copy's (or refusal
    thumbnail's) keep period: one purge task waits in the queue at a time (each run queues the
    next, for the earliest copy or thumbnail still kept), not one per takedown, so a sweep that
    takes down thousands of photos adds none. Without a worker backend (the local immediate one
    cannot wait), ``manage.py purge_kept_takedowns`` runs from cron."""
    if not purge_kept_takedowns_task.get_backend().supports_defer:
        return
    background.enqueue_unless_queued_by(purge_kept_takedowns_task, when, slack=PURGE_SLACK)


def _schedule_next_purge() -> None:
    # Copies and thumbnails under an open appeal wait for its decision, which schedules their
    # purge.
    copy = (
        Notice.objects.filter(kind=Notice.Kind.TAKEDOWN, purged_at__isnull=True)
        .exclude(kept_file="")
        .exclude(appeal__status=Appeal.Status.OPEN)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    thumbnail = (
        RefusedUpload.objects.with_thumbnail()
        .exclude(pk__in=_appealed_refusals())
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    kept = [when for when in (copy, thumbnail) if when is not None]
    if kept:
        # Not before a minute from now: never a loop of runs that find nothing to do.
        schedule_purge(max(min(kept) + keep_period(), timezone.now() + timedelta(minutes=1)))


@task
def purge_kept_takedowns_task() -> int:
    """Purge every kept copy, and empty every refusal's thumbnail, whose keep period is over,
    then queue the next purge for the earliest still kept. Returns how many copies it purged."""
    purged = purge_kept_takedowns()
    purge_refusal_thumbnails()
    _schedule_next_purge()
    return purged
