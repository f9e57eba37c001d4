"""Probers: uploaders whose attempts keep landing near banned images are escalated.

Published attacks on perceptual hashes work by trial and error, and a profile-photo upload is
that channel: edit a banned picture, upload, see whether it passes, edit again. Each try
already leaves a row: a refused upload (``RefusedUpload``, code ``banned_image``) or an
accepted near miss queued for review (``ReviewItem`` found by its upload). An account with
``MODERATION_PROBER_ATTEMPTS`` of them within ``MODERATION_PROBER_WINDOW_MINUTES`` (or a client
IP with that many refusals from more than one account) is escalated (``ProberEscalation``):
moderators see its attempts side by side, it is on the dashboard, and from then on every upload
of the account (or of an account that tried from the escalated IP) that passes screening is
held for review: queued (``ReviewItem`` found by ``held``) and kept off public pages until a
moderator decides. The user is told nothing new: refusals keep the one generic message, a held
photo saves as any other. (Between the save and the recheck that holds it, a photo is public
for as long as the recheck takes: at once with the immediate backend, a worker's pick-up time
with the database one.)
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q
from django.utils import timezone

from moderation import registry, review
from moderation.conf import moderation_settings
from moderation.hashing import Fingerprint
from moderation.models import (
    AuditEvent,
    ProberEscalation,
    RefusedUpload,
    ReviewItem,
)

logger = logging.getLogger(__name__)


def _since():
    return timezone.now() - timedelta(minutes=moderation_settings.PROBER_WINDOW_MINUTES)


def _refusals(*, user_id: int | None = None, ip: str | None = None, since=None):
    rows = RefusedUpload.objects.banned_matches().filter(created_at__gte=since or _since())
    return rows.filter(user_id=user_id) if user_id is not None else rows.filter(ip=ip)


def _near_misses(*, user_id: int, since=None):
    return ReviewItem.objects.filter(
        uploader_id=user_id,
        found_by=ReviewItem.FoundBy.UPLOAD,
        created_at__gte=since or _since(),
    )


def attempts(escalation: ProberEscalation, *, since=None) -> list[dict]:
    """The escalated uploader's attempts in the window, oldest first, as the side-by-side page
    lists them: ``{"when", "kind", "hex", "fingerprint", "distance", "found_by", "item"}``
    (``item``: the queued near miss, whose stored image can be shown; a refused upload was
    never stored, its ``refused_id`` is set while its row keeps a thumbnail of the picture).
    ``since`` defaults to the window before the escalation."""
    since = since or escalation.opened_at - timedelta(
        minutes=moderation_settings.PROBER_WINDOW_MINUTES
    )
    rows: list[dict] = []
    refused = (
        _refusals(user_id=escalation.user_id, since=since)
        if escalation.user_id
        else _refusals(ip=escalation.ip, since=since)
    )
    kept = ExpressionWrapper(Q(thumbnail__isnull=False), output_field=BooleanField())
    for r in (
        refused.select_related("nearest", "user").defer("thumbnail").annotate(kept=kept)
    ):
        rows.append(
            {
                "when": r.created_at,
                "kind": "refused",
                "refused_id": r.pk if r.kept else None,  # it keeps a thumbnail of the picture
                "who": r.user,
                "ip": r.ip,
                "hex": r.hex,
                "fingerprint": r.nearest,
                "distance": r.distance,
                "found_by": r.variant_name,
                "item": None,
            }
        )
    if escalation.user_id:
        for item in _near_misses(user_id=escalation.user_id, since=since).select_related(
            "fingerprint"
        ):
            rows.append(
                {
                    "when": item.created_at,
                    "kind": "near miss",
                    "who": escalation.user,
                    "ip": None,
                    "hex": item.hex,
                    "fingerprint": item.fingerprint,
                    "distance": item.distance,
                    "found_by": item.get_found_by_display(),
                    "refused_id": None,
                    "item": item,
                }
            )
    return sorted(rows, key=lambda row: row["when"])


def note_attempt(*, user_id: int | None, ip: str | None = None) -> list[ProberEscalation]:
    """After a refused upload or a queued near miss: escalate the account, and the IP, if
    its attempts in the window reached ``MODERATION_PROBER_ATTEMPTS``. Returns the
    escalations opened now (an uploader already escalated is not escalated twice)."""
    limit = moderation_settings.PROBER_ATTEMPTS
    if not limit:
        return []
    opened = []
    if user_id is not None and not ProberEscalation.objects.open().filter(user_id=user_id):
        refused = list(_refusals(user_id=user_id).values_list("nearest_id", flat=True))
        near = list(_near_misses(user_id=user_id).values_list("fingerprint_id", flat=True))
        if len(refused) + len(near) >= limit:
            opened += _escalate(user_id=user_id, probed=refused + near)
    if ip and not ProberEscalation.objects.open().filter(ip=ip):
        rows = list(_refusals(ip=ip).values_list("nearest_id", "user_id"))
        # One account's attempts escalate that account; an IP is escalated for several.
        if len(rows) >= limit and len({user for _, user in rows}) > 1:
            opened += _escalate(ip=ip, probed=[nearest for nearest, _ in rows])
    return opened


def _escalate(
    *, probed: list[int | None], user_id: int | None = None, ip: str | None = None
) -> list[ProberEscalation]:
    most = Counter(fid for fid in probed if fid is not None).most_common(1)
    try:
        with transaction.atomic():
            escalation = ProberEscalation.objects.create(
                user_id=user_id,
                ip=None if user_id is not None else ip,
                fingerprint_id=most[0][0] if most else None,
                attempts=len(probed),
            )
            AuditEvent.objects.create(
                action=AuditEvent.Action.ESCALATE,
                fingerprint_id=escalation.fingerprint_id,
                target=escalation.who,
                reason=(
                    f"{len(probed)} refused uploads or near misses within "
                    f"{moderation_settings.PROBER_WINDOW_MINUTES} minutes (at least "
                    f"MODERATION_PROBER_ATTEMPTS={moderation_settings.PROBER_ATTEMPTS})"
                ),
            )
    except IntegrityError:  # escalated by another process a moment ago
        return []
    logger.warning("escalated %s as a prober (%s attempts)", escalation.who, len(probed))
    return [escalation]


def accounts_from_ip(ip: str | None):
    """Ids of the accounts that made attempts from ``ip`` within the window (a subquery)."""
    return _refusals(ip=ip).exclude(user=None).values("user_id")


def escalation_for(user_id: int | None) -> ProberEscalation | None:
    """The open escalation that holds this account's uploads: its own, or one of an IP it made
    attempts from within the window."""
    if user_id is None:
        return None
    ips = _refusals(user_id=user_id).exclude(ip=None).values("ip")
    return (
        ProberEscalation.objects.open()
        .filter(Q(user_id=user_id) | Q(ip__in=ips))
        .order_by("opened_at")
        .first()
    )


def hold_for_review(
    *, instance: models.Model, fingerprint: Fingerprint, escalation: ProberEscalation
) -> ReviewItem | None:
    """Queue an escalated uploader's accepted upload as held (kept off public pages until a
    moderator decides), against the flag it probed most. None when it is held already."""
    flagged = escalation.fingerprint
    if flagged is None:  # no flag behind the attempts (cannot happen for banned refusals)
        return None
    target = registry.target_for(instance)
    name = target.image(instance).name
    distance = (fingerprint.dhash ^ flagged.fingerprint.dhash).bit_count()
    try:
        with transaction.atomic():
            item, created = ReviewItem.objects.get_or_create(
                target_key=target.key,
                object_id=instance.pk,
                file_name=name,
                fingerprint=flagged,
                status=ReviewItem.Status.PENDING,
                defaults={
                    "target": target.label(instance),
                    "dhash": fingerprint.signed,
                    "phash": fingerprint.phash_signed,
                    "uploader_id": target.owner_id(instance),
                    "distance": distance,
                    "found_by": ReviewItem.FoundBy.HELD,
                },
            )
    except IntegrityError:
        return None
    if not created:
        return None
    transaction.on_commit(lambda: review.notify_review_subscribers())  # the queue grew
    return item


def held(target_key: str) -> models.QuerySet:
    """Pending held items of one kind of image (public pages leave their images out)."""
    return ReviewItem.objects.pending().filter(
        target_key=target_key, found_by=ReviewItem.FoundBy.HELD
    )


def is_held(instance: models.Model) -> bool:
    """Whether this stored image is held for review (not to be shown publicly yet)."""
    target = registry.target_for(instance)
    image = target.image(instance)
    if not image:
        return False
    return held(target.key).filter(object_id=instance.pk, file_name=image.name).exists()


def held_image(model: type[models.Model]) -> Exists:
    """An expression, true for ``model`` rows whose current image is held (public listings
    exclude them: ``.exclude(held_image(Profile))``)."""
    target = registry.target_for(model)
    return Exists(
        held(target.key).filter(object_id=OuterRef("pk"), file_name=OuterRef(target.file_field))
    )


def close_escalation(*, escalation: ProberEscalation, actor, reason: str = "") -> bool:
    """Close an escalation: the uploader's next uploads are no longer held (items already held
    stay in the queue). Audited. False when it was closed already."""
    with transaction.atomic():
        closed = ProberEscalation.objects.filter(
            pk=escalation.pk, status=ProberEscalation.Status.OPEN
        ).update(status=ProberEscalation.Status.CLOSED, closed_by=actor, closed_at=timezone.now())
        if closed:
            AuditEvent.objects.create(
                action=AuditEvent.Action.ESCALATION_CLOSE,
                actor=actor,
                fingerprint_id=escalation.fingerprint_id,
                target=escalation.who,
                reason=reason or "closed by a moderator",
            )
    escalation.refresh_from_db()
    return bool(closed)
