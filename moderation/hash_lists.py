"""Hash lists: each list's policy (distance, on/off, enforce or shadow) and distance trials.

Every change is logged to the banned set's change log with the list's flags, so every process
enforces it from its next lookup. A distance can be put on trial (recorded, never enforced),
then promoted (enforced; a wider distance sweeps the stored photos) or discarded. Audited.
A list switched on, or from shadow to enforce, sweeps the stored photos against its PDQ, MD5
and SHA-256 entries (``list_sweep``).
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from moderation import flood_guard
from moderation.banned_set import lock_banned_set, log_list
from moderation.conf import moderation_settings
from moderation.list_sweep import sweep_list_after_commit
from moderation.models import AuditEvent, FlaggedFingerprint, HashList, SignalEntry
from moderation.signal_set import log_signal_list
from moderation.sweeping import sweep_after_commit

logger = logging.getLogger(__name__)

# The widest PDQ distance a list may have: up to 63 bits the PDQ index reads a few buckets
# per chunk (``pdq_index``); PDQ's own recommendation is 31 of 256.
MAX_PDQ_DISTANCE = 63


def hash_list_update(
    *,
    hash_list: HashList,
    max_distance: int | None,
    enabled: bool,
    mode: str,
    pdq_distance: int | None = None,
    actor: AbstractBaseUser | None = None,
) -> HashList:
    """Change a list's distance, on/off switch, mode or PDQ distance (None: unchanged), and
    tell every process's indexes.

    Each active flag of the list is logged again with the new policy (switched off: as
    inactive), so the change is enforced by the next lookup everywhere. Costs one change row
    per stored variant of the list's flags, and one for its PDQ, MD5 and SHA-256 entries
    (read from their rows at each match); lists change rarely.
    """
    _check_list_distance(max_distance)
    if pdq_distance is not None and not 0 <= pdq_distance <= MAX_PDQ_DISTANCE:
        raise ValidationError(
            _("A list's PDQ distance must be from 0 to %(max)s."),
            code="pdq_distance",
            params={"max": MAX_PDQ_DISTANCE},
        )
    with transaction.atomic():
        lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        pdq_distance = locked.pdq_distance if pdq_distance is None else pdq_distance
        before = (locked.max_distance, locked.enabled, locked.mode)
        # Switched on, or from shadow to enforce while on: the stored photos meet its entries.
        owes_sweep = enabled and (not locked.enabled or (locked.shadow and mode != locked.mode))
        changed = before != (max_distance, enabled, mode)
        signal_changed = changed or locked.pdq_distance != pdq_distance
        locked.max_distance, locked.enabled, locked.mode = max_distance, enabled, mode
        locked.pdq_distance = pdq_distance
        locked.save(update_fields=["max_distance", "enabled", "mode", "pdq_distance"])
        if changed:
            log_list(locked)
        if signal_changed:
            log_signal_list(locked)
        if owes_sweep and SignalEntry.objects.active().filter(hash_list=locked).exists():
            _sweep_list_entries(locked, actor)
        if changed or signal_changed:
            logger.info(
                "hash list %s: distance %s, PDQ distance %s, %s, %s (by %s)",
                locked.name,
                max_distance,
                pdq_distance,
                "enabled" if enabled else "disabled",
                mode,
                actor,
            )
    hash_list.refresh_from_db()
    return hash_list


def _sweep_list_entries(hash_list: HashList, actor) -> None:
    """Owe a sweep of the stored photos against every active entry of the list; a list the
    flood guard held and a moderator switched back to enforce is resumed: audited, and its
    sweep is not guarded."""
    resumed = not hash_list.shadow and flood_guard.list_was_held(hash_list)
    if resumed:
        AuditEvent.objects.create(
            action=AuditEvent.Action.LIST_FLOOD_RESUME,
            actor=actor,
            target=flood_guard.list_target(hash_list),
            reason="switched back to enforce after the flood guard held it: swept unguarded",
        )
    sweep_list_after_commit(hash_list=hash_list, guarded=not resumed)


def hash_list_flood_resume(*, hash_list: HashList, actor: AbstractBaseUser | None) -> bool:
    """Resume a list the flood guard held: the moderator confirms its entries are right. It is
    switched back to enforce (audited as a resume) and its sweep runs again, unguarded, once
    this commits. False when it is not held (already decided, switched off, or never held)."""
    with transaction.atomic():
        lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        if not _held(locked):
            return False
        hash_list_update(
            hash_list=locked,
            max_distance=locked.max_distance,
            enabled=True,
            mode=HashList.Mode.ENFORCE,
            actor=actor,
        )
    hash_list.refresh_from_db()
    return True


def hash_list_flood_drop(
    *, hash_list: HashList, actor: AbstractBaseUser | None, reason: str = ""
) -> bool:
    """Drop a list the flood guard held: its matches were a mistake. It stays in shadow (it
    blocks nothing, what it would do is still recorded for its owner to read), the hold is
    closed (audited), and switching it to enforce later is an ordinary, guarded change.
    Photos it took down before the hold stay down, with their notices and appeals. False when
    it is not held."""
    with transaction.atomic():
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        if not _held(locked):
            return False
        AuditEvent.objects.create(
            action=AuditEvent.Action.LIST_FLOOD_DROP,
            actor=actor,
            target=flood_guard.list_target(locked),
            reason=reason or "dropped by a moderator after the flood guard held it: left in shadow",
        )
    return True


def _held(hash_list: HashList) -> bool:
    return hash_list.enabled and hash_list.shadow and flood_guard.list_was_held(hash_list)


def _check_list_distance(distance: int | None) -> None:
    if distance is not None and not 0 <= distance <= moderation_settings.REVIEW_DISTANCE:
        raise ValidationError(
            _("A list's distance must be from 0 to %(max)s (MODERATION_REVIEW_DISTANCE)."),
            code="distance",
            params={"max": moderation_settings.REVIEW_DISTANCE},
        )


def _audit_list(action: str, hash_list: HashList, actor, reason: str) -> None:
    AuditEvent.objects.create(
        action=action, actor=actor, target=f"hash list {hash_list.name}"[:200], reason=reason
    )


def hash_list_propose_distance(
    *, hash_list: HashList, distance: int, actor: AbstractBaseUser | None = None
) -> HashList:
    """Put a new dHash distance on trial for an enforced list, without enforcing it.

    From the next lookup in every process (the list's flags are logged again with the
    proposal), each accepted upload that the proposed distance would block or queue and the
    enforced one does not is recorded as a ``ShadowHit`` of kind "distance". Audited. Raises
    ``ValidationError`` for a distance out of range, equal to the enforced one, or a list that
    is switched off or in shadow mode (try a shadow list's distance by changing it directly).
    """
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise ValidationError(_("The proposed distance must be a whole number."), code="distance")
    _check_list_distance(distance)
    with transaction.atomic():
        lock_banned_set()
        locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
        if not locked.enabled or locked.shadow:
            raise ValidationError(
                _("Only an enforcing list that is switched on can try a distance: %(state)s."),
                code="not_enforcing",
                params={"state": _("switched off") if not locked.enabled else _("shadow mode")},
            )
        if distance == locked.effective_distance:
            raise ValidationError(
                _("%(distance)s is the distance the list enforces already."),
                code="same_distance",
                params={"distance": distance},
            )
        locked.proposed_distance = distance
        locked.proposed_by = actor
        locked.proposed_at = timezone.now()
        locked.save(update_fields=["proposed_distance", "proposed_by", "proposed_at"])
        log_list(locked)
        _audit_list(
            AuditEvent.Action.PROPOSE,
            locked,
            actor,
            f"distance {distance} on trial (enforced: {locked.effective_distance})",
        )
    hash_list.refresh_from_db()
    return hash_list


_SWEEP_BY_IDS_LIMIT = 1000


def _locked_list_on_trial(hash_list: HashList) -> HashList:
    """The list, locked with the banned-set writers' lock (inside the caller's transaction);
    ``ValidationError`` (code ``no_trial``) when no distance is on trial."""
    lock_banned_set()
    locked = HashList.objects.select_for_update().get(pk=hash_list.pk)
    if locked.proposed_distance is None:
        raise ValidationError(_("No distance is on trial for this list."), code="no_trial")
    return locked


def hash_list_promote_distance(
    *, hash_list: HashList, actor: AbstractBaseUser | None = None
) -> HashList:
    """Enforce the list's proposed distance: it becomes the list's distance, the trial ends,
    every process enforces it from its next lookup, and (when it is wider) the photos already
    stored are swept against the list after commit, as after a flag. Audited.
    ``ValidationError`` (code ``no_trial``) when nothing is on trial."""
    with transaction.atomic():
        locked = _locked_list_on_trial(hash_list)
        before = locked.effective_distance
        _check_list_distance(locked.proposed_distance)  # the setting may have shrunk since
        locked.max_distance = locked.proposed_distance
        locked.proposed_distance = None
        locked.save(update_fields=["max_distance", "proposed_distance"])
        log_list(locked)
        if locked.max_distance > before:
            # Wider: photos stored before now within it are taken down (or queued), as after a
            # flag. A large list is swept as the whole banned set rather than by a huge id list.
            ids = list(
                FlaggedFingerprint.objects.active()
                .filter(hash_list=locked)
                .values_list("pk", flat=True)[: _SWEEP_BY_IDS_LIMIT + 1]
            )
            sweep_after_commit(ids if len(ids) <= _SWEEP_BY_IDS_LIMIT else None)
        _audit_list(
            AuditEvent.Action.PROMOTE,
            locked,
            actor,
            f"distance {locked.max_distance} enforced (was {before})",
        )
    hash_list.refresh_from_db()
    return hash_list


def hash_list_discard_distance(
    *, hash_list: HashList, actor: AbstractBaseUser | None = None, reason: str = ""
) -> HashList:
    """End the list's trial without changing what it enforces. Audited; the hits recorded
    during the trial stay. ``ValidationError`` (code ``no_trial``) when nothing is on trial."""
    with transaction.atomic():
        locked = _locked_list_on_trial(hash_list)
        proposed = locked.proposed_distance
        locked.proposed_distance = None
        locked.save(update_fields=["proposed_distance"])
        log_list(locked)
        _audit_list(
            AuditEvent.Action.DISCARD,
            locked,
            actor,
            f"distance {proposed} discarded (enforced stays {locked.effective_distance})"
            + (f": {reason}" if reason else ""),
        )
    hash_list.refresh_from_db()
    return hash_list
