"""The review queue: images a moderator should look at, and the moderators who are told.

An image lands here when it is near a banned fingerprint without matching it (a near miss), or
matches only a low-information flag: found by the recheck after an upload or by a sweep after
a flag (``sweeping``). Each (image, flag) is queued once while pending. What shadow-mode lists
and distances on trial would have done is recorded beside it (``ShadowHit``), never enforced.
Subscribed moderators get an email summary, at most once per
``MODERATION_REVIEW_NOTIFY_MINUTES``. The decisions on queued items are the desk's (``desk``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from email.utils import format_datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Min, Q
from django.tasks import task
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from moderation import registry
from moderation.background import enqueue_now, enqueue_on_commit
from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.matching import Match, Trial
from moderation.models import (
    EmailDelivery,
    FlaggedFingerprint,
    ReviewItem,
    ReviewSubscription,
    ShadowHit,
)
from moderation.signals import REVIEW, SHADOW, ListMatch

logger = logging.getLogger(__name__)
# Decision events, one logger for all flows (config/settings.py sets its level).
decisions = logging.getLogger("moderation.decisions")


def queue_for_review(
    *,
    instance: models.Model,
    fingerprint: Fingerprint,
    match: Match,
    found_by: str = ReviewItem.FoundBy.UPLOAD,
) -> ReviewItem | None:
    """Put a stored image that is near a banned fingerprint in the review queue (once per image
    and fingerprint while pending). Returns None when it is already queued. ``found_by``: the
    upload's recheck, or a sweep over stored images after a flag."""
    target = registry.target_for(instance)
    name = target.image(instance).name
    owner = target.owner_id(instance)
    try:
        with transaction.atomic():
            item, created = ReviewItem.objects.get_or_create(
                target_key=target.key,
                object_id=instance.pk,
                file_name=name,
                fingerprint_id=match.fingerprint_id,
                status=ReviewItem.Status.PENDING,
                defaults={
                    "target": target.label(instance),
                    "dhash": fingerprint.signed,
                    "phash": fingerprint.phash_signed,
                    "uploader_id": owner,
                    "distance": match.distance,
                    "confirm_distance": match.confirm_distance,
                    "found_by": found_by,
                },
            )
    except IntegrityError:  # queued by another process a moment ago
        return None
    if not created:
        return None
    transaction.on_commit(lambda: notify_review_subscribers())
    transaction.on_commit(
        lambda: decisions.info(
            "queued for review: %s",
            item.target,
            extra={
                "event": "moderation.queued_for_review",
                "review_item_id": item.pk,
                "fingerprint_id": item.fingerprint_id,
                "target": item.target,
                "distance": item.distance,
                "found_by": item.found_by,
            },
        )
    )
    return item


def _recorded(key: str, pk: int, fingerprint: Fingerprint, kind: str) -> set[tuple]:
    """(flag, proposed distance or None) of the trial hits already recorded for this image
    (the same stored picture: same row, same hash)."""
    rows = ShadowHit.objects.filter(
        kind=kind, target_key=key, object_id=pk, dhash=fingerprint.signed
    ).values_list("fingerprint_id", "proposed_distance")
    if kind == ShadowHit.Kind.LIST:
        return {(fid, None) for fid, _ in rows}
    return set(rows)


def record_shadow_hits(
    *, instance: models.Model, fingerprint: Fingerprint, matches: list[Match]
) -> list[ShadowHit]:
    """Record that shadow-mode lists would have blocked this stored image (one row per flag,
    once: a recheck run again records nothing new)."""
    target = registry.target_for(instance)
    owner = target.owner_id(instance)
    known = _recorded(target.key, instance.pk, fingerprint, ShadowHit.Kind.LIST)
    matches = [m for m in matches if (m.fingerprint_id, None) not in known]
    lists = dict(
        FlaggedFingerprint.objects.filter(pk__in=[m.fingerprint_id for m in matches]).values_list(
            "pk", "hash_list_id"
        )
    )
    return ShadowHit.objects.bulk_create(
        ShadowHit(
            hash_list_id=lists[m.fingerprint_id],
            fingerprint_id=m.fingerprint_id,
            target_key=target.key,
            object_id=instance.pk,
            target=target.label(instance),
            dhash=fingerprint.signed,
            distance=m.distance,
            confirm_distance=m.confirm_distance,
            uploader_id=owner,
        )
        for m in matches
        if m.fingerprint_id in lists
    )


def record_trial_hits(
    *, instance: models.Model, fingerprint: Fingerprint, trials: list[Trial]
) -> list[ShadowHit]:
    """Record what lists' proposed distances would have done to this stored image and their
    enforced distances did not ("would be blocked at proposed distance N"), one row per flag
    and proposed distance, once: a recheck run again records nothing new."""
    target = registry.target_for(instance)
    owner = target.owner_id(instance)
    known = _recorded(target.key, instance.pk, fingerprint, ShadowHit.Kind.DISTANCE)
    trials = [t for t in trials if (t.match.fingerprint_id, t.match.proposed_distance) not in known]
    lists = dict(
        FlaggedFingerprint.objects.filter(
            pk__in=[t.match.fingerprint_id for t in trials]
        ).values_list("pk", "hash_list_id")
    )
    return ShadowHit.objects.bulk_create(
        ShadowHit(
            kind=ShadowHit.Kind.DISTANCE,
            outcome=t.outcome,
            proposed_distance=t.match.proposed_distance,
            enforced_distance=t.enforced_distance,
            hash_list_id=lists[t.match.fingerprint_id],
            fingerprint_id=t.match.fingerprint_id,
            target_key=target.key,
            object_id=instance.pk,
            target=target.label(instance),
            dhash=fingerprint.signed,
            distance=t.match.distance,
            confirm_distance=t.match.confirm_distance,
            uploader_id=owner,
        )
        for t in trials
        if t.match.fingerprint_id in lists
    )


def record_list_matches(
    *,
    instance: models.Model,
    fingerprint: Fingerprint,
    matches: Iterable[ListMatch],
    found_by: str = ReviewItem.FoundBy.UPLOAD,
) -> tuple[list[ReviewItem], list[ShadowHit]]:
    """What a stored image's upload (or a list sweep, ``found_by``) matched in the hash lists'
    entries and did not block on: a match that may only review (a low-quality PDQ) queues the
    image for review (once per image and entry while pending); a shadow list's match is
    recorded as a ``ShadowHit`` (once per image and entry). ``fingerprint`` is the stored
    image's own."""
    matches = list(matches)
    target = registry.target_for(instance)
    owner = target.owner_id(instance)
    name = target.image(instance).name
    queued = []
    for m in (m for m in matches if m.outcome == REVIEW and m.entry_id is not None):
        try:
            with transaction.atomic():
                item, created = ReviewItem.objects.get_or_create(
                    target_key=target.key,
                    object_id=instance.pk,
                    file_name=name,
                    signal_entry_id=m.entry_id,
                    status=ReviewItem.Status.PENDING,
                    defaults={
                        "target": target.label(instance),
                        "dhash": fingerprint.signed,
                        "phash": fingerprint.phash_signed,
                        "uploader_id": owner,
                        "distance": m.distance,
                        "found_by": found_by,
                    },
                )
        except IntegrityError:  # queued by another process a moment ago
            continue
        if created:
            queued.append(item)
    if queued:
        transaction.on_commit(lambda: notify_review_subscribers())
    known = set(
        ShadowHit.objects.filter(
            kind=ShadowHit.Kind.LIST,
            target_key=target.key,
            object_id=instance.pk,
            dhash=fingerprint.signed,
            signal_entry__isnull=False,
        ).values_list("signal_entry_id", flat=True)
    )
    hits = ShadowHit.objects.bulk_create(
        ShadowHit(
            hash_list_id=m.list_id,
            signal_entry_id=m.entry_id,
            target_key=target.key,
            object_id=instance.pk,
            target=target.label(instance),
            dhash=fingerprint.signed,
            distance=m.distance,
            uploader_id=owner,
        )
        for m in matches
        if m.outcome == SHADOW and m.entry_id is not None and m.entry_id not in known
    )
    return queued, hits


def review_subscription_set(*, user: AbstractBaseUser, subscribed: bool) -> bool:
    """Opt a moderator in to (or out of) an email whenever the review queue grows."""
    if subscribed:
        ReviewSubscription.objects.get_or_create(user=user)
    else:
        ReviewSubscription.objects.filter(user=user).delete()
    return subscribed


def _may_review(user) -> bool:
    return bool(
        user.is_active
        and user.is_staff
        and user.email
        and user.has_perm("moderation.review_upload")
    )


def _review_digest(count: int, oldest, now) -> tuple[str, str]:
    """Subject and body of a review-queue email: how many wait, the oldest's age, a link (no
    image, hash or user name)."""
    url = moderation_settings.SITE_URL.rstrip("/") + reverse(
        "admin:moderation_reviewitem_changelist"
    )
    minutes = moderation_settings.REVIEW_NOTIFY_MINUTES
    every = f"at most one of these every {minutes} minutes" if minutes else "one per queued upload"
    waiting = "1 upload waits" if count == 1 else f"{count} uploads wait"
    return (
        f"[moderation] review queue: {count} waiting",
        f"{waiting} in the review queue; the oldest has waited {timesince(oldest, now)}.\n\n"
        f"Review them: {url}?status__exact=pending\n\n"
        f"You get {every} because you opted in on the review queue page.",
    )


def notify_review_subscribers(*, owed_only: bool = False) -> int:
    """Email each subscribed moderator who may still decide queued uploads a summary of the
    queue, at most once per ``MODERATION_REVIEW_NOTIFY_MINUTES``. Returns how many were sent.

    Called after an upload is queued (and, with ``owed_only``, by the deferred digest task).
    Each subscriber's send is claimed with one conditional UPDATE of ``last_notified_at``, so
    several processes queueing at once send one mail, not one each; the same transaction writes
    the email as an ``EmailDelivery`` row, sent and marked sent under its lock (``_send``), so
    a task run again after its worker died never mails twice (but in the window ``_send``
    describes, where it sends the same message again), and (with a worker backend) a
    check a lease later sends it if the sender died first. A subscriber still inside
    the period is marked as owed (``pending_since``); with a worker backend that can defer
    tasks, a digest task is scheduled for the end of the period, otherwise the next queued
    upload after it sends the summary. A mail failure is logged, never raised at the upload,
    and the claim is given back.
    """
    period = timedelta(minutes=moderation_settings.REVIEW_NOTIFY_MINUTES)
    now = timezone.now()
    subscriptions = ReviewSubscription.objects.select_related("user")
    if owed_only:
        subscriptions = subscriptions.filter(pending_since__isnull=False)
    eligible = [sub for sub in subscriptions if _may_review(sub.user)]
    if not eligible:
        return 0
    summary = ReviewItem.objects.pending().aggregate(count=Count("pk"), oldest=Min("created_at"))
    if not summary["count"]:  # decided meanwhile: nothing to tell anyone
        ReviewSubscription.objects.filter(pk__in=[s.pk for s in eligible]).update(
            pending_since=None
        )
        return 0
    subject, body = _review_digest(summary["count"], summary["oldest"], now)
    sent = 0
    scheduled = False
    for sub in eligible:
        due = Q(last_notified_at__isnull=True) | Q(last_notified_at__lte=now - period)
        with transaction.atomic():
            claimed = (
                ReviewSubscription.objects.filter(pk=sub.pk)
                .filter(due)
                .update(last_notified_at=now, pending_since=None)
            )
            if claimed:
                delivery = EmailDelivery.objects.create(
                    kind=EmailDelivery.Kind.REVIEW_DIGEST,
                    user=sub.user,
                    recipient=sub.user.email,
                    subject=subject,
                    body=body,
                    created_at=now,
                )
                if not scheduled:  # one check per call, committed with the first claim
                    scheduled = _schedule_unsent_emails()
        if not claimed:
            owed = ReviewSubscription.objects.filter(pk=sub.pk, pending_since__isnull=True).update(
                pending_since=now
            )
            if owed or owed_only:  # newly owed, or a digest that ran early: (re)schedule
                last = (
                    ReviewSubscription.objects.filter(pk=sub.pk)
                    .values_list("last_notified_at", flat=True)
                    .first()
                )
                _schedule_review_digest((last or now) + period)
            continue
        try:
            sent += _send(delivery.pk)
        except Exception:  # noqa: BLE001 - a mail outage must not break the upload's recheck
            logger.exception("could not email review-queue subscriber %s", sub.user_id)
            with transaction.atomic():
                EmailDelivery.objects.filter(pk=delivery.pk, sent_at__isnull=True).delete()
                ReviewSubscription.objects.filter(pk=sub.pk, last_notified_at=now).update(
                    last_notified_at=sub.last_notified_at, pending_since=sub.pending_since or now
                )
    return sent


def email_moderators(*, kind: str, subject: str, body: str) -> int:
    """Owe an email to every subscribed moderator who may decide queued items (an alert, not
    a digest: no period applies). Written as ``EmailDelivery`` rows in the caller's transaction
    and sent once it commits; if this process dies first, the check ``_schedule_unsent_emails``
    queues sends them. Returns how many are owed."""
    owed = [
        EmailDelivery.objects.create(
            kind=kind, user=sub.user, recipient=sub.user.email, subject=subject, body=body
        ).pk
        for sub in ReviewSubscription.objects.select_related("user")
        if _may_review(sub.user)
    ]
    if owed:
        _schedule_unsent_emails()
        transaction.on_commit(lambda: _send_each(owed))
    return len(owed)


def _send_each(delivery_ids: list[int]) -> None:
    for pk in delivery_ids:
        try:
            _send(pk)
        except Exception:  # noqa: BLE001 - the row stays unsent for the next check
            logger.exception("could not send email delivery %s", pk)


def _send(delivery_id: int) -> int:
    """Send one claimed email and mark it sent, holding its row's lock meanwhile; 0 if it is
    sent already or another process holds it (and so is sending it).

    The lock and ``sent_at`` make a task that runs twice, or two processes, send it once. One
    window no sender can close on its own side: SMTP has accepted the message and the process
    dies (or loses its database) before the transaction commits. The sender cannot know
    whether the relay accepted it, so the row is unsent and the message goes out again. It
    goes out as *the same message*: the Message-ID and Date are the row's, made when it was
    claimed, and subject and body are stored, so the retransmission is byte for byte the
    first one and mail systems that collapse duplicates by Message-ID show it once (one that
    does not would show it twice: this is at-least-once delivery of one message, not exactly
    once). The other way round (marked sent, never handed to SMTP) cannot happen.
    """
    with transaction.atomic():
        delivery = (
            EmailDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id, sent_at__isnull=True)
            .first()
        )
        if delivery is None:
            return 0
        EmailMessage(
            subject=delivery.subject,
            body=delivery.body,
            to=[delivery.recipient],
            headers={
                "Message-ID": delivery.message_id,
                "Date": format_datetime(delivery.created_at),
            },
        ).send()
        delivery.sent_at = timezone.now()
        delivery.save(update_fields=["sent_at"])
    return 1


def owe_email(
    *, kind: str, user: AbstractBaseUser, subject: str, body: str
) -> EmailDelivery | None:
    """Owe ``user`` an email (none without an address): the ``EmailDelivery`` row is written in
    the caller's transaction and the mail sent once that commits, under the row's lock
    (``_send``), so it goes out once even if the caller's task runs twice. A mail failure is
    logged, never raised at the caller, and the row stays unsent; with a worker backend a check
    a lease later sends it (``_schedule_unsent_emails``)."""
    if not user.email:
        return None
    delivery = EmailDelivery.objects.create(
        kind=kind, user=user, recipient=user.email, subject=subject, body=body
    )
    _schedule_unsent_emails()
    transaction.on_commit(lambda: _send_quietly(delivery.pk))
    return delivery


def _send_quietly(delivery_id: int) -> int:
    try:
        return _send(delivery_id)
    except Exception:  # noqa: BLE001 - the decision stands; the unsent row is tried again
        logger.exception("could not send email delivery %s", delivery_id)
        return 0


def send_unsent_emails() -> int:
    """Send every claimed email still unsent and not being sent (its claimer died between the
    claim and the send). Returns how many were sent; a failure stays unsent for the next try."""
    sent = 0
    for pk in EmailDelivery.objects.filter(sent_at__isnull=True).values_list("pk", flat=True):
        try:
            sent += _send(pk)
        except Exception:  # noqa: BLE001 - the others still go; this one is tried again
            logger.exception("could not send email delivery %s", pk)
    return sent


def _schedule_unsent_emails() -> bool:
    """With a worker backend, a check a lease later that the emails being claimed were sent:
    if this process dies before sending them, the worker that runs it sends them (the task that
    claimed them may never run again: a recheck run twice queues nothing new, so mails
    nothing). Enqueued inside the claim's transaction, not on commit: the task row then
    commits with the claim, so no moment exists where one is committed without the other."""
    if not unsent_emails_task.get_backend().supports_defer:
        return False
    when = timezone.now() + timedelta(seconds=moderation_settings.WORKER_LEASE_SECONDS)
    enqueue_now(unsent_emails_task.using(run_after=when))
    return True


def _schedule_review_digest(when) -> None:
    """Run the owed digest at ``when`` in the worker; the immediate backend cannot wait, so
    there the next queued upload after the period sends it."""
    if not review_digest_task.get_backend().supports_defer:
        return
    enqueue_on_commit(review_digest_task.using(run_after=when))


@task
def review_digest_task() -> int:
    """Send the review-queue summaries owed to moderators whose email period has ended (and
    any claimed summary a dead process never sent)."""
    return notify_review_subscribers(owed_only=True)


@task
def unsent_emails_task() -> int:
    """Send the claimed emails whose sender died before sending them; usually none."""
    return send_unsent_emails()
