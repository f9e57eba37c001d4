"""The match rule: which banned candidates an image matches, and the decision that follows.

Pure: no database, no index. ``banned_index.BannedIndex`` finds the candidates (every stored
variant of a flag within dHash reach, with its pHash distance and its list's policy); this module
says what they mean, and ``screening`` applies it to uploads and stored images.

A candidate *matches* when it is within ``MODERATION_MAX_DISTANCE`` dHash bits (``<=``, or its
hash list's own distance) and its pHash within ``MODERATION_MAX_CONFIRM_DISTANCE`` bits
(``<=``). A flag or image without a pHash (rows from before the confirmation hash existed whose
original was not kept) cannot be confirmed: it matches only within
``MODERATION_MAX_UNCONFIRMED_DISTANCE`` dHash bits. A match of an informative flag blocks; a match
of only low-information flags (flagged by a superuser's override: near-flat pictures collide), or
a near miss (``MatchRule.reviews``), sends the image to review. Matches of shadow-mode lists are
reported and never decide. A list's distance on trial is evaluated from the same candidates
(``Trial``) and never decides either.

``MatchRule.matches`` decides one candidate; ``MatchRule.matches_columns`` is the same rule over
numpy columns, for comparing a few fingerprints with every stored image at once (the impact
preview). ``tests/test_matching_rule.py`` proves the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from moderation.conf import moderation_settings
from moderation.variants import VARIANTS

BLOCK, REVIEW, PASS = "block", "review", "pass"


def is_low_information(information: int | None, minimum: int | None = None) -> bool:
    """True when a fingerprint's information is below ``minimum`` (default:
    ``MODERATION_MIN_INFORMATION``; a caller deciding many rows at once reads it once).

    Unknown information (a row from before pipeline version 3) is not low: such rows keep the
    behaviour they had.
    """
    minimum = moderation_settings.MIN_INFORMATION if minimum is None else minimum
    return information is not None and information < minimum


@dataclass(frozen=True, slots=True)
class Match:
    """A banned flag near a looked-up fingerprint. Staff-only information."""

    fingerprint_id: int  # the FlaggedFingerprint (the flag)
    distance: int  # dHash bits to the flag's nearest variant
    variant: int = 0  # which of variants.VARIANTS matched (an orientation or a crop)
    confirm_distance: int | None = None  # pHash bits; None: one side has no pHash
    low_information: bool = False  # the flagged image carries too little information
    list_distance: int | None = None  # the flag's hash list's own dHash distance, if any
    shadow: bool = False  # the flag's hash list is in shadow mode (records, never blocks)
    proposed_distance: int | None = None  # a distance on trial for the flag's list, if any
    by_cut: bool = False  # found by the upload cut as ``variant`` (distances are cut to cut)
    by_inner: bool = False  # found by the picture inside the upload's frame

    @property
    def variant_label(self) -> str:
        return VARIANTS[self.variant].label

    @property
    def found_by_kind(self) -> str:
        """``whole``, ``cut`` or ``frame``: what of the upload found this match (for scripts)."""
        return FRAME if self.by_inner else CUT if self.by_cut else WHOLE

    @property
    def variant_name(self) -> str:
        """Which variant matched, as staff read it (``name_variant``)."""
        return name_variant(variant=self.variant, found_by=self.found_by_kind)


# What of the upload was compared with a flag's variant (``Match.found_by_kind``, and what
# ``RefusedUpload.found_by`` records for a banned fingerprint's match).
WHOLE, CUT, FRAME = "whole", "cut", "frame"


def name_variant(*, variant: int | None, found_by: str) -> str:
    """The one name staff read for what matched (``check_image``, the admin, its pages).

    Two facts make it: which of the flag's variants matched (an orientation or a crop,
    ``variants.VARIANTS``) and what of the upload it was compared with. Naming only the second
    said "whole image" for a mirrored copy that ``check_image`` called "mirrored"; naming both
    keeps every surface saying the same. ``variant`` None: a record from before the variant was
    kept (only what of the upload is known); ``found_by`` that is not one of the three kinds
    (a hash list's entry, e.g. "pdq in list partner") is shown as it is.
    """
    if variant is None or not 0 <= variant < len(VARIANTS):
        known = {WHOLE: "whole image (variant not recorded)", CUT: "a cut of the upload",
                 FRAME: "picture inside a frame (variant not recorded)"}
        return known.get(found_by, found_by)
    label = VARIANTS[variant].label
    if found_by == CUT:
        return f"{label}, the upload cut alike"
    if found_by == FRAME:
        return f"{label}, the picture inside the upload's frame"
    return label


@dataclass(frozen=True, slots=True)
class MatchRule:
    """When a candidate counts as a match. All distances are Hamming bits, ``<=``."""

    max_distance: int  # dHash
    max_confirm_distance: int  # pHash, for entries and uploads that have one
    max_unconfirmed_distance: int  # dHash alone, when either side has no pHash
    # dHash distance within which an unmatched candidate sends the upload to review; 0: never.
    review_distance: int = 0
    # ...and pHash distance within which it does so (a flag without pHash: max_distance).
    review_confirm_distance: int = 64
    # A staff lookup's own distance applies to every list, whatever a list says.
    override: bool = False

    @classmethod
    def from_settings(cls, *, max_distance: int | None = None) -> MatchRule:
        """The site's rule; ``max_distance`` overrides the dHash distance (a staff lookup),
        for every hash list, and caps the review distance."""
        distance = moderation_settings.MAX_DISTANCE if max_distance is None else max_distance
        review = moderation_settings.REVIEW_DISTANCE
        return cls(
            max_distance=distance,
            max_confirm_distance=moderation_settings.MAX_CONFIRM_DISTANCE,
            max_unconfirmed_distance=min(moderation_settings.MAX_UNCONFIRMED_DISTANCE, distance),
            review_distance=review if max_distance is None else min(review, max_distance),
            review_confirm_distance=moderation_settings.REVIEW_CONFIRM_DISTANCE,
            override=max_distance is not None,
        )

    @property
    def radius(self) -> int:
        """How far the dHash lookup must reach to find every candidate (a hash list's own
        distance is never larger than the review distance, see ``HashList``)."""
        return max(self.max_distance, self.max_unconfirmed_distance, self.review_distance)

    def for_blocking(self, list_reach: int = 0) -> MatchRule:
        """This rule with its review band cut back to the match distances: all an upload's own
        check needs to decide whether to refuse it. ``list_reach``: the largest dHash distance
        of an enabled, enforced hash list (0: none has its own).

        Whether an accepted upload is a near miss (queued for review), and what shadow-mode
        lists and distances on trial would have done, is decided by the re-check that runs
        once it is stored (``sweeping.recheck_stored_image``, in the task worker), with the
        whole rule. Off the request because the review radius is the expensive part of the
        rule at size: at 10M clustered banned entries a query at 16 bits finds ~80x the
        candidates of one at 12 (docs/performance.md, "Upload latency at 10M entries").
        """
        reach = max(
            self.max_distance,
            self.max_unconfirmed_distance,
            min(list_reach, self.review_distance),
        )
        return replace(self, review_distance=min(self.review_distance, reach))

    def distance_for(self, match: Match) -> int:
        """The dHash distance that applies to ``match``: its list's, or the rule's."""
        if match.list_distance is None or self.override:
            return self.max_distance
        return match.list_distance

    def matches(self, match: Match) -> bool:
        max_distance = self.distance_for(match)
        if match.confirm_distance is None:
            return match.distance <= min(self.max_unconfirmed_distance, max_distance)
        return (
            match.distance <= max_distance and match.confirm_distance <= self.max_confirm_distance
        )

    def reviews(self, match: Match) -> bool:
        """A near miss: not a match, but it misses the rule on *one* hash only, by a little.

        Either the dHash is within the match distance and the pHash within the review confirm
        distance, or the dHash is within the review distance and the pHash within the match
        confirm distance. Not both over: a candidate a little over on both is what strangers
        look like at scale. Measured against 999,999 banned entries (the upload benchmark's
        set, 200 distinct ~2 MP photos): the box "dHash <= 16 and pHash <= 18" queued 39 of
        them, this rule 9; on the corpus it keeps every missed caption and 3° rotation of
        ``evaluate_matching`` (seeds 0-3) in the queue.
        """
        if self.matches(match) or match.distance > self.review_distance:
            return False
        if match.confirm_distance is None:
            return match.distance <= self.distance_for(match)
        if match.distance <= self.distance_for(match):
            return match.confirm_distance <= self.review_confirm_distance
        return match.confirm_distance <= self.max_confirm_distance

    def matches_columns(
        self,
        distance: np.ndarray,
        confirm_distance: np.ndarray,
        has_confirm: np.ndarray,
        *,
        list_distance: int | None = None,
    ) -> np.ndarray:
        """``matches`` over columns: per row, whether a candidate at ``distance`` dHash bits and
        ``confirm_distance`` pHash bits (meaningful where ``has_confirm``) of a flag in a list
        with ``list_distance`` matches. Same rule, vectorised (the impact preview)."""
        max_distance = self.distance_for(Match(0, 0, list_distance=list_distance))
        unconfirmed = distance <= min(self.max_unconfirmed_distance, max_distance)
        confirmed = (distance <= max_distance) & (confirm_distance <= self.max_confirm_distance)
        return np.where(has_confirm, confirmed, unconfirmed)


@dataclass(frozen=True, slots=True)
class Trial:
    """A flag whose list has a proposed distance (``HashList.proposed_distance``) under which
    the upload would be ``outcome`` (BLOCK or REVIEW), while the enforced distance gives it
    less (REVIEW or nothing). ``match`` is the orientation behind that outcome; the distances
    are ``match.proposed_distance`` and ``enforced_distance``."""

    match: Match
    outcome: str
    enforced_distance: int


@dataclass(frozen=True)
class Verdict:
    """What an upload of a fingerprint gets: ``decision`` and the matches behind it."""

    decision: str  # BLOCK, REVIEW or PASS
    matches: list[Match] = field(default_factory=list)  # under the rule, nearest first
    candidates: list[Match] = field(default_factory=list)  # all within dHash reach
    # Near misses of enforced lists (within the review distance, not matched), nearest first.
    near: list[Match] = field(default_factory=list)
    # Matches of shadow-mode lists: what they would have blocked (never part of the decision).
    shadow: list[Match] = field(default_factory=list)
    # What proposed list distances would do that the enforced ones do not (never part of the
    # decision): one per flag, see ``Trial``.
    trial: list[Trial] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.decision == BLOCK

    @property
    def nearest(self) -> Match | None:
        """The match behind the decision: the nearest informative one when blocked."""
        if self.blocked:
            return next(m for m in self.matches if not m.low_information)
        return self.matches[0] if self.matches else None

    @property
    def for_review(self) -> Match | None:
        """The match that sends the upload to review: a low-information match or a near miss."""
        if self.decision != REVIEW:
            return None
        return self.matches[0] if self.matches else self.near[0]

    def without(self, flag_ids: set[int]) -> Verdict:
        """This verdict without the flags ``flag_ids`` (allowed for this image), decided again."""
        matched = [m for m in self.matches if m.fingerprint_id not in flag_ids]
        near = [m for m in self.near if m.fingerprint_id not in flag_ids]
        trial = [t for t in self.trial if t.match.fingerprint_id not in flag_ids]
        return Verdict(_decision(matched, near), matched, self.candidates, near, self.shadow, trial)

    def verified(self, rejected: set[int], demoted: set[int]) -> Verdict:
        """This verdict after verification, decided again: the flags in ``rejected`` are not
        this image (their matches, near misses, shadow matches and trials go), and the matches
        of the flags in ``demoted`` could not be confirmed either way (they send the image to
        review instead of blocking it)."""
        matched = [m for m in self.matches if m.fingerprint_id not in rejected | demoted]
        near = sorted(
            [m for m in self.near if m.fingerprint_id not in rejected]
            + [m for m in self.matches if m.fingerprint_id in demoted],
            key=closeness,
        )
        shadow = [m for m in self.shadow if m.fingerprint_id not in rejected]
        trial = [t for t in self.trial if t.match.fingerprint_id not in rejected]
        return Verdict(_decision(matched, near), matched, self.candidates, near, shadow, trial)


def decision_of(verdicts: Iterable[Verdict]) -> str:
    """The decision for an image of several frames: BLOCK when any frame is blocked, else
    REVIEW when any is near, else PASS."""
    decisions = {v.decision for v in verdicts}
    return BLOCK if BLOCK in decisions else REVIEW if REVIEW in decisions else PASS


def _one_per_flag(matches: Iterable[Match]) -> list[Match]:
    """Keep each flag's first match (the input is nearest first)."""
    seen: set[int] = set()
    kept = []
    for m in matches:
        if m.fingerprint_id not in seen:
            seen.add(m.fingerprint_id)
            kept.append(m)
    return kept


def _decision(matched: list[Match], near: list[Match]) -> str:
    """Block on an informative match; review a low-information match or a near miss."""
    if any(not m.low_information for m in matched):
        return BLOCK
    return REVIEW if matched or near else PASS


def decide(candidates: list[Match], rule: MatchRule) -> Verdict:
    """Apply ``rule`` to every candidate variant (nearest first) and decide.

    A match of an informative flag of an enforced list blocks; a match of only low-information
    flags, or a near miss (``MatchRule.reviews``), sends the upload to review; matches of
    shadow-mode lists are reported apart and change nothing.
    """
    enforced = [m for m in candidates if not m.shadow]
    matched = _one_per_flag(m for m in enforced if rule.matches(m))
    shadow = _one_per_flag(m for m in candidates if m.shadow and rule.matches(m))
    matched_ids = {m.fingerprint_id for m in matched}
    near = [
        m
        for m in _one_per_flag(m for m in enforced if rule.reviews(m))
        if m.fingerprint_id not in matched_ids
    ]
    decision = _decision(matched, near)

    trial = [] if rule.override else _trials(enforced, rule)
    return Verdict(
        decision, matched, _one_per_flag(sorted(candidates, key=closeness)), near, shadow, trial
    )


def closeness(m: Match) -> tuple[int, int]:
    return m.distance, 65 if m.confirm_distance is None else m.confirm_distance


def _severity(match: Match, rule: MatchRule) -> int:
    """2: the match blocks; 1: it sends the upload to review; 0: neither."""
    if rule.matches(match):
        return 1 if match.low_information else 2
    return 1 if rule.reviews(match) else 0


def _trials(enforced: list[Match], rule: MatchRule) -> list[Trial]:
    """Per flag whose list has a distance on trial: what the proposed distance would do, when
    it is more than what the enforced distance does. Only the candidates the lookup already
    found are looked at (a proposed distance, like a list's, is at most the review distance,
    which is how far every lookup reaches), so a trial costs no second lookup."""
    now: dict[int, int] = {}
    proposed: dict[int, tuple[int, Match]] = {}
    for m in enforced:  # nearest first
        if m.proposed_distance is None:
            continue
        fid = m.fingerprint_id
        now[fid] = max(now.get(fid, 0), _severity(m, rule))
        tried = replace(m, list_distance=m.proposed_distance)
        severity = _severity(tried, rule)
        if severity > proposed.get(fid, (0, m))[0]:
            proposed[fid] = (severity, m)
    return [
        Trial(m, BLOCK if severity == 2 else REVIEW, rule.distance_for(m))
        for fid, (severity, m) in proposed.items()
        if severity > now[fid]
    ]
