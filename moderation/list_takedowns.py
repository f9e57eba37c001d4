"""What a hash list's match does to a photo already stored: one decision, for every path.

Two paths meet stored photos with the lists' entries: a list sweep (``list_sweep``: the stored
photos against the entries a list just gained) and the recheck after an upload
(``recheck_stored_lists``: an upload screened just before an import committed, and stored
after that import's sweep had passed its range, is missed by both the upload's screening and
the sweep). Both decide each photo here (``decide``): the upload rule on the entries in force
(``signals.exact_rule``, ``signals.pdq_rule``: an enforced list blocks, a low PDQ quality only
reviews, a shadow list only records), for the picture the photo still holds, without the
entries a moderator found innocent for it (dismissed in the queue, or overturned on appeal).
Then ``act``: a block takes the photo down (``takedown.move_to_quarantine``: quarantine, audit
naming the entry, statement of reasons) under its list's flood guard (``flood_guard``); a
review queues it; a shadow match is a ``ShadowHit``. Acting twice on one photo changes
nothing: a takedown re-reads and locks its row, reviews and shadow hits are recorded once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.db import models, transaction
from django.db.models import Q

from moderation import flood_guard, registry, review, signals, stored_hashes
from moderation.models import Appeal, HashList, ReviewItem, SignalEntry, SignalType, StoredSignal
from moderation.takedown import move_to_quarantine


@dataclass(frozen=True)
class PhotoDecision:
    """What the lists' entries do to one stored photo: ``block`` (the match that takes it
    down), else ``record`` (matches that queue it for review or are recorded as shadow hits)."""

    instance: models.Model
    block: signals.ListMatch | None
    record: tuple[signals.ListMatch, ...] = ()


@dataclass
class ListActions:
    """What ``act`` did, by stored image label: taken down, queued for review, and held (a
    block the list's flood guard stopped: recorded as the shadow match it now is)."""

    taken_down: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def entries_in_force(ids: Iterable[int]) -> dict[int, SignalEntry]:
    """The entries among ``ids`` still in force (active, of a list switched on), with their
    lists: a retraction or a list switched off applies at once."""
    return {
        e.pk: e
        for e in SignalEntry.objects.in_force().filter(pk__in=list(ids)).select_related("hash_list")
    }


def decide(
    target: registry.ImageTarget,
    instance: models.Model | None,
    signal: StoredSignal,
    candidates: dict[int, int],
    in_force: dict[int, SignalEntry],
) -> PhotoDecision | None:
    """The decision for one stored photo whose kept ``signal`` the index found near
    ``candidates`` (entry id -> distance); None when nothing is to be done (no match in force,
    the photo gone or replaced since its signals were read, or every match allowed)."""
    if instance is None or not target.image(instance):
        return None
    if target.hash_of(instance) != signal.dhash:
        return None  # replaced since: its new picture has its own signals row
    found = [(in_force[pk], d) for pk, d in candidates.items() if pk in in_force]
    pdq_rows = [(e, d) for e, d in found if e.signal_type == SignalType.PDQ]
    exact = [e for e, _ in found if e.signal_type != SignalType.PDQ]
    matches = signals.exact_rule(exact) + signals.pdq_rule(pdq_rows, quality=signal.pdq_quality)
    matches = _without_allowed(target, instance.pk, signal.dhash, matches)
    if not matches:
        return None
    blocking = next((m for m in matches if m.blocks), None)
    if blocking is not None:
        return PhotoDecision(instance, blocking)
    return PhotoDecision(instance, None, tuple(matches))


def _without_allowed(target, pk: int, dhash: int, matches: list) -> list:
    """``matches`` without the entries a moderator found innocent for this picture: a queued
    match dismissed, or a takedown overturned on appeal (the allowlist of list entries)."""
    ids = [m.entry_id for m in matches]
    if not ids:
        return matches
    dismissed = ReviewItem.objects.filter(
        target_key=target.key,
        object_id=pk,
        dhash=dhash,
        signal_entry_id__in=ids,
        status=ReviewItem.Status.DISMISSED,
    ).values_list("signal_entry_id", flat=True)
    overturned = Appeal.objects.filter(
        Q(notice__target_key=target.key, notice__object_id=pk, notice__dhash=dhash),
        notice__signal_entry_id__in=ids,
        status=Appeal.Status.OVERTURNED,
    ).values_list("notice__signal_entry_id", flat=True)
    allowed = set(dismissed) | set(overturned)
    return [m for m in matches if m.entry_id not in allowed]


def act(
    target: registry.ImageTarget,
    decisions: Iterable[PhotoDecision],
    *,
    in_force: dict[int, SignalEntry],
    guarded: bool = True,
    found_by: str = ReviewItem.FoundBy.UPLOAD,
) -> ListActions:
    """Carry out ``decisions``: the blocks of each list weighed together by its flood guard
    first (``guarded=False``: a moderator resumed the list), then taken down; the rest queued
    for review (``found_by``) or recorded as shadow hits."""
    done = ListActions()
    decisions = list(decisions)
    by_list: dict[int, list[tuple[models.Model, signals.ListMatch]]] = {}
    for d in decisions:
        if d.block is not None:
            by_list.setdefault(d.block.list_id, []).append((d.instance, d.block))
    for list_id, blocks in by_list.items():
        _take_down(target, list_id, blocks, in_force, guarded, done)
    for d in decisions:
        if d.block is None:
            queued, _hits = review.record_list_matches(
                instance=d.instance,
                fingerprint=target.fingerprint(d.instance),
                matches=d.record,
                found_by=found_by,
            )
            done.queued += [target.label(d.instance)] * len(queued)
    return done


def _take_down(target, list_id: int, blocks, in_force, guarded: bool, done: ListActions) -> None:
    """Take one list's blocked images down, the whole lot weighed by the list's flood guard
    first; what the guard holds is recorded as the shadow list it now is."""
    labels = [target.label(instance) for instance, _ in blocks]
    if not flood_guard.list_allows_batch(hash_list_id=list_id, targets=labels, guarded=guarded):
        _record_held(target, blocks, done)
        return
    for instance, match in blocks:
        if take_down_by_entry(
            instance=instance,
            entry=in_force[match.entry_id],
            distance=match.distance,
            guarded=guarded,
        ):
            done.taken_down.append(target.label(instance))
        elif target.objects.filter(
            pk=instance.pk, **{target.hash_field: target.hash_of(instance)}
        ).exists():
            _record_held(target, [(instance, match)], done)  # the guard said no


def _record_held(target, blocks, done: ListActions) -> None:
    for instance, match in blocks:
        done.held.append(target.label(instance))
        fp = target.fingerprint(instance)
        if fp is not None:
            review.record_list_matches(
                instance=instance,
                fingerprint=fp,
                matches=[replace(match, outcome=signals.SHADOW)],
            )


def take_down_by_entry(
    *, instance: models.Model, entry: SignalEntry, distance: int, guarded: bool = True
) -> bool:
    """Take down a stored image a list's entry blocks (quarantine, audit, notice), unless
    the image changed since it was read or the list's flood guard says no (``guarded``): then
    False, and a list that would reach one user too many is held."""
    target = registry.target_for(instance)
    expected = target.hash_of(instance)
    with transaction.atomic():
        locked = target.objects.select_for_update().get(pk=instance.pk)
        if not target.image(locked) or target.hash_of(locked) != expected:
            return False
        label = target.label(locked)
        # Takedowns by one list count one after the other (the lock), so no two both see room.
        hash_list = HashList.objects.select_for_update().get(pk=entry.hash_list_id)
        allowed = flood_guard.may_take_down_for_list(
            hash_list=hash_list, target=label, guarded=guarded
        )
        if allowed:
            move_to_quarantine(
                locked,
                target=target,
                distance=distance,
                label=label,
                expected=expected,
                entry=entry,
                reason=f"{entry.signal_type} {entry.value} in list {hash_list.name}",
            )
    if not allowed and hash_list.enabled and not hash_list.shadow:
        # After the transaction: holding takes the banned-set lock, always taken first.
        flood_guard.hold_list(
            hash_list_id=hash_list.pk, reached=len(flood_guard.list_reached(hash_list)) + 1
        )
    return allowed


def recheck_stored_lists(*, instance: models.Model) -> bool:
    """Look a newly stored image's kept signals up in every list in force and act as a list
    sweep does; True when it was taken down.

    Runs in the recheck after an upload commits (``sweeping.recheck_stored_image``): an upload
    screened before an import committed, and stored after the import's sweep had passed its
    range, is caught here. An image without a signals row for its picture (stored before they
    were kept) is not compared; a reindex writes the row."""
    target = registry.target_for(instance)
    if not target.image(instance):
        return False
    signal = StoredSignal.objects.filter(
        target_id=stored_hashes.marker_id(target.key),
        object_pk=instance.pk,
        dhash=target.hash_of(instance),
    ).first()
    if signal is None:
        return False
    candidates = signals.entry_candidates(pdq_hex=signal.pdq, md5=signal.md5, sha256=signal.sha256)
    if not candidates:
        return False
    in_force = entries_in_force(candidates)
    decision = decide(target, instance, signal, candidates, in_force)
    if decision is None:
        return False
    return bool(act(target, [decision], in_force=in_force).taken_down)
