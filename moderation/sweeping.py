"""Sweeping: stored images that match the banned set are taken down, near misses queued.

Three ways a stored image meets the banned set after it was stored: the sweep after a flag
(``sweep_task``, the new flags against every stored image), the recheck after an upload
(``recheck_image_task``: an upload that passed just before a flag or a list import committed;
its lists' side is ``list_takedowns``), and the full sweep after a reindex (a range at a time,
``sweep_stored_range``; ``full_sweep`` runs the ranges). All three screen a stored image with
what it was checked with at upload (its fingerprint, cuts and framed picture:
``registry.ImageTarget.checked``) through ``screening.screen``, as the upload path does. A
take-down moves the file to quarantine and clears the image (``takedown``); it is audited, and
its owner gets a statement of reasons (``notices``).
``preview_flag_impact`` says, before a flag, what its sweep would take down.

Every sweep has a ``Sweep`` row, created queued with the flag (``sweep_after_commit``) and
kept by ``run_sweep``: attempts, running, done with counts, failed with its error. The desk
shows that state instead of promising a takedown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.tasks import task
from django.utils import timezone

from moderation import flood_guard, list_takedowns, probing, registry, review, stored_index
from moderation.background import enqueue_on_commit
from moderation.banned_index import BannedIndex, stored_variants, variant_entries
from moderation.banned_set import active_variant_rows
from moderation.decoding import open_image
from moderation.files import (
    storage_errors,
)
from moderation.hash_columns import HashColumns
from moderation.hashing import Fingerprint, fingerprint_variants
from moderation.matching import REVIEW, Match, MatchRule, is_low_information
from moderation.models import (
    DEFAULT_HASH_LIST,
    FlaggedFingerprint,
    HashList,
    ReviewItem,
    Sweep,
)
from moderation.screening import (
    SIGNAL_SIDE,
    ImageSignals,
    Verifier,
    lookup_in,
    screen,
    signal_of_file,
)
from moderation.takedown import move_to_quarantine
from moderation.verification import MIN_FLAG_KEYPOINTS, compare


@dataclass
class SweepResult:
    checked: int = 0
    taken_down: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # near misses put in the review queue
    # matches not taken down: their flag is held by the flood guard (or the image changed)
    held: list[str] = field(default_factory=list)


def take_down_image(
    *,
    instance: models.Model,
    flagged: FlaggedFingerprint,
    distance: int,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> bool:
    """Move a stored image that matches a banned fingerprint into quarantine and clear it.

    Re-reads the row under a lock and gives up (returns False) if the image changed since the
    match was found, e.g. the user replaced it in the meantime. Gives up too when the flood
    guard says no (``flood_guard.may_take_down``, asked with the flag's row locked): the flag
    is held, inactive, or this takedown would reach one user too many; in that last case the
    flag is held once this transaction has ended.
    """
    target = registry.target_for(instance)
    expected = target.hash_of(instance)
    with transaction.atomic():
        locked = target.objects.select_for_update().get(pk=instance.pk)
        image = target.image(locked)
        if not image or target.hash_of(locked) != expected:
            return False
        label = target.label(locked)
        # Takedowns by one flag count one after the other (the lock), so no two both see room.
        flag_row = FlaggedFingerprint.objects.select_for_update().get(pk=flagged.pk)
        allowed = flood_guard.may_take_down(flagged=flag_row, target=label)
        if allowed:
            move_to_quarantine(
                locked,
                target=target,
                distance=distance,
                label=label,
                expected=expected,
                flagged=flagged,
                actor=actor,
                reason=reason,
            )
    if not allowed and flag_row.active and not flag_row.held:
        # After the transaction: holding takes the banned-set lock, which is always taken
        # before a flag's row lock, never after.
        flood_guard.hold_flag(
            flagged_id=flagged.pk, reached=len(flood_guard.reached(flagged.pk)) + 1
        )
    return allowed


def sweep_banned_matches(*, fingerprint_ids: Iterable[int] | None = None) -> SweepResult:
    """Take down every stored image within the match distance of a banned fingerprint, and
    queue for review every one that is only near it (what an upload would get as ``review``).

    The allowlist applies as at upload: an image a moderator allowed for a fingerprint is
    neither taken down nor queued because of it. A near miss already pending is not queued
    again, so running the sweep twice adds nothing.

    With ``fingerprint_ids`` (the normal case, right after a flag) only those fingerprints are
    compared, with the stored images the index of stored hashes finds near them
    (``stored_index.rows_to_screen``: about one index lookup per variant); without, the whole
    active banned set is (after a reindex), with every stored image: one pass over the table.
    Either way each image is screened from its stored hash and probes.
    """
    result = SweepResult()
    rule = MatchRule.from_settings()
    if fingerprint_ids is None:
        lookup = lookup_in(rule=rule)
    else:
        entries = list(variant_entries(active_variant_rows(fingerprint_ids)))
        index = BannedIndex()
        index.build(entries)
        if not len(index):
            return result
        lookup = lookup_in(index, rule)

    for target in registry.targets():
        if fingerprint_ids is None:
            rows = target.checked_rows()
        else:
            rows = stored_index.rows_to_screen(target, entries, rule)
        _screen_rows(target, rows, lookup, result)
        if fingerprint_ids is None:
            target.mark_checked(target.with_hashes())
    return result


def _screen_rows(target: registry.ImageTarget, rows, lookup, result: SweepResult) -> None:
    """Screen ``(pk, CheckFingerprints)`` rows of one kind with ``lookup``: take down what
    blocks, queue near misses (each takedown commits on its own; both are idempotent)."""
    hits: list[tuple[int, int, int]] = []
    near: list[tuple[int, Fingerprint, Match]] = []
    for pk, checked in rows:
        result.checked += 1
        verifier = Verifier(_stored_signals(target, pk))
        verdict = screen(checked, lookup=lookup, verifier=verifier).verdict
        if verdict.blocked:
            hits.append((pk, verdict.matches[0].fingerprint_id, verdict.matches[0].distance))
        elif verdict.decision == REVIEW:
            near.append((pk, checked.frames[0], verdict.for_review))
    by_flag: dict[int, list[tuple[models.Model, int]]] = {}
    for pk, fid, dist in hits:
        instance = target.objects.filter(pk=pk).first()
        if instance is not None:
            by_flag.setdefault(fid, []).append((instance, dist))
    for fid, found in by_flag.items():
        flagged = FlaggedFingerprint.objects.filter(pk=fid).first()
        if flagged is None:
            continue
        # The whole batch is weighed first: a flag it would take past the flood limit is held
        # before any of it comes down (each takedown checks again, under the flag's lock).
        labels = [target.label(instance) for instance, _ in found]
        if not flood_guard.allows_batch(flagged_id=fid, targets=labels):
            result.held += labels
            continue
        for instance, dist in found:
            if take_down_image(instance=instance, flagged=flagged, distance=dist):
                result.taken_down.append(target.label(instance))
            else:
                result.held.append(target.label(instance))
    for pk, fp, match in near:
        # Near, not blockable: a moderator looks, as for an upload (once while pending).
        instance = target.objects.filter(pk=pk, **{target.hash_field: fp.signed}).first()
        if instance is None or not target.image(instance):
            continue
        item = review.queue_for_review(
            instance=instance, fingerprint=fp, match=match, found_by=ReviewItem.FoundBy.SWEEP
        )
        if item is not None:
            result.queued.append(target.label(instance))


def sweep_stored_range(
    target: registry.ImageTarget, *, after: int, upto: int, limit: int
) -> tuple[SweepResult, int | None]:
    """Sweep the next ``limit`` stored images of ``target`` with ``after < pk <= upto``
    against the whole banned set, and record them as checked: one batch of a full sweep's range.
    Returns what it did and the last pk it screened (None: nothing was left in the range)."""
    queryset = target.with_hashes().filter(pk__gt=after, pk__lte=upto).order_by("pk")[:limit]
    rows = list(target.checked_rows(queryset=queryset))
    result = SweepResult()
    if not rows:
        return result, None
    _screen_rows(target, rows, lookup_in(rule=MatchRule.from_settings()), result)
    target.mark_checked(target.with_hashes().filter(pk__in=[pk for pk, _ in rows]))
    return result, rows[-1][0]


def recheck_stored_image(*, instance: models.Model) -> bool:
    """Compare one stored image with the current banned set and hash lists; take it down if
    it matches.

    Runs after an upload commits: an upload that passed its check just before a flag or a
    list import committed is caught here (the flag's sweep could not see the uncommitted
    upload; the import's sweep may have passed its range before the upload was stored). An
    image that is only near a banned fingerprint is queued for review instead; what
    shadow-mode lists and distances on trial would have done is recorded. The lists' PDQ,
    MD5 and SHA-256 entries are looked up with the image's kept signals and decided as a
    list sweep decides (``list_takedowns``). An image whose uploader is escalated as a prober
    (``probing``) and that is not taken down is held for review whatever it is near.
    """
    target = registry.target_for(instance)
    checked = target.checked(instance)
    if checked is None:
        return False
    fp = checked.frames[0]
    verdict = screen(checked, verifier=Verifier(_stored_signals(target, instance.pk))).verdict
    if verdict.shadow and not verdict.blocked:
        review.record_shadow_hits(instance=instance, fingerprint=fp, matches=verdict.shadow)
    if verdict.trial and not verdict.blocked:
        review.record_trial_hits(instance=instance, fingerprint=fp, trials=verdict.trial)
    if not verdict.blocked:
        if list_takedowns.recheck_stored_lists(instance=instance):
            return True  # a list's entry took it down: nothing is left to hold or queue
        owner = target.owner_id(instance)
        escalation = probing.escalation_for(owner)
        if escalation is not None:  # an escalated prober's upload waits for a moderator
            probing.hold_for_review(instance=instance, fingerprint=fp, escalation=escalation)
        elif verdict.decision == REVIEW:
            review.queue_for_review(instance=instance, fingerprint=fp, match=verdict.for_review)
            probing.note_attempt(user_id=owner)  # a near miss is an attempt too
        return False
    nearest = verdict.matches[0]
    flagged = FlaggedFingerprint.objects.get(pk=nearest.fingerprint_id)
    if take_down_image(instance=instance, flagged=flagged, distance=nearest.distance):
        return True
    # The flag's flood guard held it (or the image changed): the lists may still block it.
    return list_takedowns.recheck_stored_lists(instance=instance)


def _stored_signals(target: registry.ImageTarget, pk: int) -> ImageSignals:
    """The verification signals of a stored image, read from storage only if a candidate
    needs them (rare: most stored images have none)."""

    def picture():
        instance = target.objects.get(pk=pk)
        with storage_errors(), target.image(instance).open("rb") as fh:
            return open_image(fh, max_side=SIGNAL_SIDE)

    return ImageSignals(picture)


# --- impact preview -------------------------------------------------------------------------


@dataclass
class ImpactPreview:
    """What flagging some stored images would take down besides themselves."""

    count: int = 0  # other stored images the sweep would take down
    nearest: list[tuple[models.Model, int]] = field(default_factory=list)  # (instance, distance)
    unreadable: int = 0  # selected images whose file could not be read


def preview_flag_impact(*, instances: Iterable[models.Model], limit: int = 12) -> ImpactPreview:
    """How many other stored images a flag of ``instances`` would take down, nearest first.

    Read-only. Fingerprints the selected files (every variant, as the flag will) and
    compares every stored image with them under the sweep's rule and the default list's
    policy, vectorised (``hash_columns.HashColumns``): each kind of stored image's hashes are
    loaded once into numpy columns, and each selected variant is one XOR + popcount over them,
    so 100k profiles cost milliseconds, not a Python loop. Each image the hashes find is then
    verified as the sweep will verify it (``screening.verify``): read from storage and compared
    with the selected images' signals, so the preview counts what the sweep will take down.
    """
    preview = ImpactPreview()
    selected: set[tuple[str, int]] = set()
    entries: list[tuple[int, Fingerprint, bool]] = []  # (variant, fingerprint, low information)
    signals: list[bytes] = []  # the selected images' verification signals, as a flag stores
    default = HashList.objects.filter(name=DEFAULT_HASH_LIST).first()  # read-only: no create
    for instance in instances:
        target = registry.target_for(instance)
        selected.add((target.key, instance.pk))
        try:
            with storage_errors(), target.image(instance).open("rb") as fh:
                variants = fingerprint_variants(fh)
                signals.append(signal_of_file(fh))
        except (OSError, ValidationError):
            preview.unreadable += 1
            continue
        low = is_low_information(variants[0].information)
        entries += [(number, fp, low) for number, fp in stored_variants(variants)]
    if not entries or (default is not None and (not default.enabled or default.shadow)):
        return preview
    rule = MatchRule.from_settings()
    list_distance = default.max_distance if default is not None else None
    hits: list[tuple[int, str, int]] = []
    for target in registry.targets():
        columns = HashColumns.load(target.hash_rows())
        pks, nearest = columns.nearest_matches(entries, rule=rule, list_distance=list_distance)
        hit = nearest >= 0
        for pk, distance in zip(pks[hit].tolist(), nearest[hit].tolist()):
            if (target.key, pk) not in selected and _verified(target, pk, signals):
                hits.append((distance, target.key, pk))
    preview.count = len(hits)
    for distance, key, pk in sorted(hits)[:limit]:
        instance = registry.target_by_key(key).objects.filter(pk=pk).first()
        if instance is not None:
            preview.nearest.append((instance, distance))
    return preview


def _verified(target: registry.ImageTarget, pk: int, signals: list[bytes]) -> bool:
    """Whether the sweep would still take this stored image down after verification: it is
    verified against one of the selected images that could block (a featureless one, flagged
    by a superuser's override, only ever sends to review); an unreadable stored file keeps the
    rule's answer, as the sweep does."""
    image = _stored_signals(target, pk)
    try:
        mine = image.whole(mirrored=True)  # which selected variant it matched is not known
    except (OSError, ValueError, ValidationError, ObjectDoesNotExist):
        return True
    for theirs in signals:
        result = compare(mine, theirs)
        if result.verified and result.keypoints[1] >= MIN_FLAG_KEYPOINTS:
            return True
    return False


# --- background tasks -----------------------------------------------------------------------


def run_sweep(sweep: Sweep) -> SweepResult | None:
    """Run a flag's sweep (or a whole-banned-set sweep in one pass) and keep its state.

    The attempt is counted, and the sweep shown running, in a commit of its own before the
    work starts, so a sweep whose worker died shows it was tried; an error is recorded (state
    failed, the error kept) and re-raised, so the queue records it too and a retry runs it
    again. Running it again is harmless: takedowns re-read the row (``take_down_image``) and a
    pending near miss is not queued twice. A finished sweep is not run again (None)."""
    started = Sweep.objects.filter(pk=sweep.pk).exclude(state=Sweep.State.DONE)
    if not started.update(
        state=Sweep.State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Value(timezone.now())),
    ):
        return None
    ids = None if sweep.full else list(sweep.fingerprints.values_list("pk", flat=True))
    try:
        result = sweep_banned_matches(fingerprint_ids=ids)
    except BaseException as e:
        Sweep.objects.filter(pk=sweep.pk).update(
            state=Sweep.State.FAILED, last_error=f"{type(e).__name__}: {e}"[:2000]
        )
        raise
    # Takedowns of an attempt that died are not repeated by the next one (the photo is gone),
    # so those counts add up over attempts; checked is what the last pass looked at.
    Sweep.objects.filter(pk=sweep.pk).update(
        state=Sweep.State.DONE,
        checked=result.checked,
        taken_down=F("taken_down") + len(result.taken_down),
        queued=F("queued") + len(result.queued),
        finished_at=timezone.now(),
    )
    return result


@task
def sweep_task(fingerprint_ids: list[int] | None = None, sweep_id: int | None = None) -> dict:
    """Run sweep ``sweep_id`` (``sweeping.sweep_after_commit`` created it, queued).

    ``fingerprint_ids`` alone is how the previous release queued it: such a task gets its
    ``Sweep`` row here, so its state shows too."""
    if sweep_id is None:
        sweep = _new_sweep(fingerprint_ids)
    else:
        sweep = Sweep.objects.filter(pk=sweep_id).first()
        if sweep is None:
            return {"sweep": sweep_id, "note": "sweep missing"}
        if sweep.hash_list_id is not None:  # its ranges run as list_sweep's tasks
            return {"sweep": sweep_id, "note": "a list sweep"}
    result = run_sweep(sweep)
    sweep.refresh_from_db()
    return {
        "sweep": sweep.pk,
        "state": sweep.state,
        "checked": sweep.checked,
        "taken_down": sweep.taken_down,
        "queued": sweep.queued,
        **({} if result is not None else {"note": "already done"}),
    }


def _new_sweep(fingerprint_ids: list[int] | None) -> Sweep:
    sweep = Sweep.objects.create(full=fingerprint_ids is None)
    if fingerprint_ids:
        sweep.fingerprints.set(FlaggedFingerprint.objects.filter(pk__in=fingerprint_ids))
    return sweep


@task
def recheck_image_task(model_label: str, pk: int) -> bool:
    """Re-check one stored image after its upload committed (closes the upload/flag race)."""
    instance = apps.get_model(model_label)._default_manager.filter(pk=pk).first()
    if instance is None:
        return False
    return recheck_stored_image(instance=instance)


def sweep_after_commit(fingerprint_ids: list[int] | None) -> Sweep:
    """Sweep for these flags (None: the whole banned set) once the transaction commits.

    The sweep's row is created now, queued, in the caller's transaction (the flag's): the desk
    shows it from the moment the flag exists, and it vanishes with a flag that rolls back."""
    sweep = _new_sweep(fingerprint_ids)
    enqueue_on_commit(sweep_task, sweep_id=sweep.pk)
    return sweep


def recheck_after_commit(instance: models.Model) -> None:
    """Re-check a newly stored image once the transaction that stored it commits."""
    enqueue_on_commit(recheck_image_task, instance._meta.label_lower, instance.pk)
