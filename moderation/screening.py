"""Screening: the one path from an image's fingerprints to a decision after the allowlist.

Everything that asks "may this image be shown?" comes here: the upload form and the validator,
``check_image``, the sweep after a flag, the recheck after an upload, the full sweep after a
reindex and ``evaluate_matching``. (The impact preview compares the other way round, a few new
variants against every stored image, with the same rule in numpy: ``hash_columns``.)

An image is screened with what it was fingerprinted with (``hashing.CheckFingerprints``): every
frame, the first frame's cuts and the picture inside its frame. Each frame is looked up in the
banned set (the first with its cuts and framed picture), the match rule decides
(``matching.decide``), the flags a moderator has allowed this image for are taken out
(``without_allowed``), and each remaining candidate flag that stores a verification signal is
verified against the image's own (``verify``: local features, ``moderation.verification``),
so that two different pictures whose 64-bit hashes collide do not block or fill the queue.
The result is a ``Screening``: a value that says what was checked and what was found, which
the caller stores, shows or records. Nothing is carried on file objects.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from moderation import banned_set, flood_guard, notices, probing, registry, signals
from moderation.banned_index import BannedIndex
from moderation.conf import moderation_settings
from moderation.decoding import open_image
from moderation.hashing import (
    CheckFingerprints,
    Fingerprint,
    check_fingerprints,
    further_frame_fingerprints,
    to_unsigned,
)
from moderation.matching import BLOCK, PASS, REVIEW, Match, MatchRule, Verdict, decision_of
from moderation.models import AllowedMatch, FlaggedFingerprint, RefusedUpload
from moderation.stored_hashes import Digests
from moderation.thumbnails import thumbnail_jpeg
from moderation.variants import VARIANTS
from moderation.verification import (
    MIN_FLAG_KEYPOINTS,
    compare,
    flag_signal_of,
    framed_picture,
    signal_of,
)

logger = logging.getLogger(__name__)
# Decision events, one logger for all flows (config/settings.py sets its level).
decisions = logging.getLogger("moderation.decisions")

# Looks one fingerprint up (with the cuts and framed picture of the first frame): the process's
# banned set, or an index of a few flags (a sweep, ``evaluate_matching``).
Lookup = Callable[[Fingerprint, Mapping[int, Fingerprint] | None, Fingerprint | None], Verdict]


@dataclass(frozen=True)
class Screening:
    """What an image was checked with (``checked``) and what was found: one verdict per frame,
    after the allowlist. Staff-only: which flag matched, and how close, never reaches users."""

    checked: CheckFingerprints
    verdicts: tuple[Verdict, ...]
    # What the image's PDQ and its file's MD5 / SHA-256 matched in the hash lists' entries
    # (``signals.match_hashes``): an upload's; empty for a stored image.
    lists: tuple[signals.ListMatch, ...] = ()
    # The MD5 and SHA-256 of the upload's bytes (an upload's; None for a stored image): kept
    # beside the stored image for list sweeps.
    digests: Digests | None = None

    @property
    def decision(self) -> str:
        """BLOCK when any frame or list entry blocks, else REVIEW when any is near (or a list
        match may only review), else PASS. Shadow lists' matches decide nothing."""
        frames = decision_of(self.verdicts)
        lists = signals.decision_of(self.lists)
        if BLOCK in (frames, lists):
            return BLOCK
        return REVIEW if REVIEW in (frames, lists) else PASS

    @property
    def list_block(self) -> signals.ListMatch | None:
        """The list entry behind a block when no dHash flag blocks (nearest first)."""
        if any(v.blocked for v in self.verdicts):
            return None
        return next((m for m in self.lists if m.blocks), None)

    @property
    def blocked(self) -> bool:
        return self.decision == BLOCK

    @property
    def fingerprint(self) -> Fingerprint:
        """The image's own fingerprint (its first frame): what is stored beside it."""
        return self.checked.frames[0]

    @property
    def probe_bytes(self) -> bytes:
        """The cuts and framed picture, packed for storage beside the fingerprint."""
        return self.checked.probe_bytes()

    @property
    def verdict(self) -> Verdict:
        """The first frame's verdict (a stored image has one frame)."""
        return self.verdicts[0]

    @property
    def nearest(self) -> Match | None:
        """The match behind a block: the nearest over every blocked frame (None unless
        blocked)."""
        blocked = [v.nearest for v in self.verdicts if v.blocked]
        return min(blocked, key=lambda m: m.distance) if blocked else None

    @property
    def frame(self) -> int:
        """Which frame (1-based) holds ``nearest``; 1 when nothing blocks."""
        nearest = self.nearest
        return next(
            (i for i, v in enumerate(self.verdicts, 1) if v.blocked and v.nearest == nearest), 1
        )

    @property
    def found_with(self) -> Fingerprint | None:
        """The hash that found ``nearest``: a cut, the framed picture or the frame itself
        (its distances are from that hash)."""
        nearest = self.nearest
        if nearest is None:
            return None
        if nearest.by_cut:
            return self.checked.cuts[nearest.variant]
        if nearest.by_inner:
            return self.checked.inner
        return self.checked.frames[self.frame - 1]

    @property
    def for_review(self) -> tuple[Fingerprint, Match] | None:
        """(frame, match) of the first frame sent to review, when the image is not blocked
        (None when only a list entry sends it: see ``lists``)."""
        if self.blocked:
            return None
        return next(
            (
                (fp, v.for_review)
                for fp, v in zip(self.checked.frames, self.verdicts)
                if v.decision == REVIEW
            ),
            None,
        )


def lookup_in(
    index: BannedIndex | None = None, rule: MatchRule | None = None, *, blocking: bool = False
) -> Lookup:
    """A ``Lookup`` in ``index`` (default: this process's banned set, brought up to date with the
    change log once, here) under ``rule`` (default: the site's); ``blocking``: only as far as
    a refusal needs (``MatchRule.for_blocking``: an upload's own check)."""
    rule = MatchRule.from_settings() if rule is None else rule
    if index is not None:
        return lambda fp, cuts, inner: index.check(fp, rule, cuts=cuts, inner=inner)
    banned = banned_set.current()
    banned.sync()
    if blocking:
        rule = rule.for_blocking(banned.list_reach)
    return lambda fp, cuts, inner: banned.check(fp, rule=rule, sync=False, cuts=cuts, inner=inner)


def screen(
    checked: CheckFingerprints,
    *,
    lookup: Lookup | None = None,
    allowlist: bool = True,
    verifier: Verifier | None = None,
) -> Screening:
    """Screen an image's fingerprints: each frame looked up (the first with its cuts and framed
    picture) with ``lookup`` (default: the process's banned set under the site's rule); with
    ``allowlist``, the flags a moderator allowed it for taken out (``without_allowed``); with a
    ``verifier``, the first frame's candidates verified (``verify``; the signal is the first
    frame's, so an animation's later frames keep the rule's answer)."""
    lookup = lookup_in() if lookup is None else lookup
    verdicts = []
    for i, fp in enumerate(checked.frames):
        first = i == 0
        verdict = lookup(fp, checked.cuts if first else None, checked.inner if first else None)
        if allowlist:
            verdict = without_allowed(verdict, fp)
        if first and verifier is not None:
            verdict = verifier(verdict)
        verdicts.append(verdict)
    return Screening(checked, tuple(verdicts))


def check(
    fingerprint: Fingerprint,
    *,
    cuts: Mapping[int, Fingerprint] | None = None,
    inner: Fingerprint | None = None,
) -> Verdict:
    """The verdict for one fingerprint (with its ``cuts`` and framed picture ``inner``) against
    the process's banned set now, after the allowlist: ``screen`` of a one-frame image."""
    return screen(CheckFingerprints([fingerprint], dict(cuts or {}), inner)).verdict


def without_allowed(verdict: Verdict, fingerprint: Fingerprint) -> Verdict:
    """``verdict`` without the flags a moderator has allowed this image for (``AllowedMatch``
    in force, within ``MODERATION_ALLOWLIST_DISTANCE`` dHash bits), decided again.

    One query, only when the verdict has matches, near misses or trials (rare for an upload).
    The allowlist is never cached: a revoked exception stops applying at the next lookup in
    every process, with no change log to replay.
    """
    ids = {m.fingerprint_id for m in (*verdict.matches, *verdict.near)}
    ids |= {t.match.fingerprint_id for t in verdict.trial}
    if not ids:
        return verdict
    limit = moderation_settings.ALLOWLIST_DISTANCE
    unsigned = fingerprint.dhash
    allowed = {
        fid
        for fid, dhash in AllowedMatch.objects.in_force()
        .filter(fingerprint_id__in=ids)
        .values_list("fingerprint_id", "dhash")
        if (to_unsigned(dhash) ^ unsigned).bit_count() <= limit
    }
    if not allowed:
        return verdict
    return verdict.without(allowed)


# --- verification ---------------------------------------------------------------------------

# The screened picture is read at this size for its verification signal (which reads at most
# ``verification.MAX_SIDE`` pixels): a big JPEG is decoded at reduced scale, ~3x faster.
SIGNAL_SIDE = 512


def signal_of_file(file: Any) -> bytes:
    """The verification signal a flag of ``file`` stores (``verification.flag_signal_of``)."""
    return flag_signal_of(open_image(file, max_side=SIGNAL_SIDE))


class ImageSignals:
    """The screened image's verification signals, computed on first need: only an image with a
    candidate pays for them. ``picture`` opens the image (upright, any size)."""

    def __init__(self, picture: Callable[[], Any]) -> None:
        self._picture = picture
        self._image = None
        self._signals: dict[tuple[str, bool], bytes] = {}

    @classmethod
    def of_bytes(cls, data: bytes) -> ImageSignals:
        return cls(lambda: open_image(io.BytesIO(data), max_side=SIGNAL_SIDE))

    @classmethod
    def of_file(cls, fieldfile: Any) -> ImageSignals:
        """A stored file (a ``FieldFile`` or a path), opened only if a candidate needs it."""

        def picture():
            if isinstance(fieldfile, str):
                return open_image(fieldfile, max_side=SIGNAL_SIDE)
            with fieldfile.open("rb") as fh:
                return open_image(fh, max_side=SIGNAL_SIDE)

        return cls(picture)

    def _image_once(self):
        if self._image is None:
            self._image = self._picture()
        return self._image

    def whole(self, *, mirrored: bool = False) -> bytes:
        """The whole picture's signal; ``mirrored``: with the mirrored picture's keypoints too
        (for a candidate matched through a mirror-image variant)."""
        key = ("whole", mirrored)
        if key not in self._signals:
            self._signals[key] = signal_of(self._image_once(), mirrored=mirrored)
        return self._signals[key]

    def inner(self, *, mirrored: bool = False) -> bytes:
        """The picture inside its frame (what the index's framed-picture probe compared)."""
        key = ("inner", mirrored)
        if key not in self._signals:
            framed = framed_picture(self._image_once())
            self._signals[key] = (
                self.whole(mirrored=mirrored)
                if framed is None
                else signal_of(framed, mirrored=mirrored)
            )
        return self._signals[key]


FlagSignals = Callable[[set[int]], Mapping[int, bytes]]


def stored_flag_signals(flag_ids: set[int]) -> Mapping[int, bytes]:
    """The stored verification signals of these flags (one query; empty ones left out)."""
    rows = FlaggedFingerprint.objects.filter(pk__in=flag_ids).exclude(verification=b"")
    return {pk: bytes(signal) for pk, signal in rows.values_list("pk", "verification")}


@dataclass
class Verifier:
    """Verifies a verdict's candidate flags: the image's signals against the flags' stored
    ones. A flag without a signal (imported as bare hashes) keeps the rule's answer."""

    image: ImageSignals
    flags: FlagSignals = stored_flag_signals
    compared: dict[int, Any] = field(default_factory=dict)  # flag id -> Verification

    def __call__(self, verdict: Verdict) -> Verdict:
        return verify(verdict, self)


def _first_per_flag(matches: Iterable[Match]) -> dict[int, Match]:
    first: dict[int, Match] = {}
    for m in matches:
        first.setdefault(m.fingerprint_id, m)
    return first


def verify(verdict: Verdict, verifier: Verifier) -> Verdict:
    """``verdict`` with each candidate flag verified (``verification.compare``):

    - a match blocks only when verified; plausibly a copy (fewer inliers), it sends the image to
      review; otherwise it is not this image and goes;
    - a near miss stays in the review queue only when plausibly a copy;
    - an image too featureless to verify is not a copy of a flag that has features: it goes;
    - a flag with fewer keypoints than a flag needs (a superuser's override) never blocks: review.
    Shadow matches and trials are verified as matches are, so they record what would happen.
    """
    blocking = _first_per_flag([*verdict.matches, *verdict.shadow])
    near = _first_per_flag(verdict.near)
    trials = _first_per_flag(t.match for t in verdict.trial)
    candidates = {**trials, **near, **blocking}
    if not candidates:
        return verdict
    stored = verifier.flags(set(candidates))
    rejected: set[int] = set()
    demoted: set[int] = set()
    for fid, theirs in stored.items():
        match = candidates[fid]
        mirrored = VARIANTS[match.variant].is_reflection
        try:
            if match.by_inner:
                mine = verifier.image.inner(mirrored=mirrored)
            else:
                mine = verifier.image.whole(mirrored=mirrored)
        except (OSError, ValueError, ValidationError, ObjectDoesNotExist):
            # The picture cannot be read (a stored file gone missing, a row gone): the rule's
            # answer stands, as it did before verification existed.
            return verdict
        result = verifier.compared[fid] = compare(mine, theirs)
        if result.keypoints[1] < MIN_FLAG_KEYPOINTS:
            demoted.add(fid)  # a featureless flag (a superuser's override) never blocks
        elif not result.verifiable:
            rejected.add(fid)
        elif fid in blocking and not result.verified:
            (demoted if result.plausible else rejected).add(fid)
        elif fid not in blocking and not result.plausible:
            rejected.add(fid)
    if not (rejected or demoted):
        return verdict
    return verdict.verified(rejected, demoted - rejected)


# --- uploads --------------------------------------------------------------------------------


def upload_fingerprints(file: Any) -> CheckFingerprints:
    """The fingerprints an upload of ``file`` is checked with.

    Where the registered app stores a re-encoding (``registry.ImageTarget.store_as``), as the
    profile form does: the re-encoding's fingerprints, then the upload's further frames (which
    the re-encoding drops); otherwise every frame of the file as it is. For tools that must
    decide as the upload path does (``evaluate_matching``).
    """
    store_as = registry.upload_store_as()
    if store_as is None:
        return check_fingerprints(file)
    return stored_as_fingerprints(file, store_as(file))


def stored_as_fingerprints(upload: Any, stored: Any) -> CheckFingerprints:
    """The fingerprints of ``stored`` (a re-encoding of ``upload``'s first frame), with the
    upload's further frames after its own."""
    checked = check_fingerprints(stored)
    further = further_frame_fingerprints(upload)
    return CheckFingerprints([*checked.frames, *further], checked.cuts, checked.inner)


class ScreenedUpload(SimpleUploadedFile):
    """An upload as it will be stored (a clean re-encoding), already screened.

    The form that re-encodes an upload screens the re-encoding and hands this on: the validator
    takes its ``screening`` instead of decoding the file again, and the code that stores it takes
    the fingerprint and probes from there, so what is stored is exactly what was checked.
    ``thumbnail``: when the screening blocks, a small JPEG of the picture for the refusal's
    record (``record_refused_upload``); empty otherwise.
    """

    def __init__(self, content: bytes, screening: Screening, thumbnail: bytes = b"") -> None:
        super().__init__("photo.jpg", content, "image/jpeg")
        self.screening = screening
        self.thumbnail = thumbnail


def _chunks(upload: Any) -> Iterable[bytes]:
    """The bytes of the file as uploaded, in chunks, from its start."""
    if hasattr(upload, "seek"):
        upload.seek(0)
    if hasattr(upload, "chunks"):
        yield from upload.chunks()
    else:
        while chunk := upload.read(1 << 20):
            yield chunk
    if hasattr(upload, "seek"):
        upload.seek(0)


def list_matches(
    upload: Any,
    checked: CheckFingerprints,
    *,
    count: bool = True,
    digests: Digests | None = None,
) -> tuple[signals.ListMatch, ...]:
    """What an upload matches in the hash lists' entries: its first frame's PDQ (of what will
    be stored), and the MD5 and SHA-256 of the bytes as uploaded (``digests`` when the caller
    has them). With ``count``, counts each entry matched."""
    md5, sha256 = digests or signals.bytes_hashes(_chunks(upload))
    found = signals.match_hashes(pdq_hash=checked.frames[0].pdq, md5=md5, sha256=sha256)
    if count:
        signals.count_matches(found)
    return found


def screen_upload(
    upload: Any, *, stored: Any | None = None, record: bool = True, blocking: bool = True
) -> Screening:
    """Screen an upload against the banned set and the hash lists' entries: as ``stored`` (its
    re-encoding, plus the upload's further frames) when given, otherwise the file as it is;
    the byte hashes are always those of the upload. With ``blocking`` (an upload's own check)
    only as far as a refusal needs (``MatchRule.for_blocking``): the re-check after it is
    stored decides whether an accepted upload goes to review; without, the whole rule.
    ``record=False`` (a lookup for another service, not an upload): no entry's match count
    and no log line."""
    checked = (
        check_fingerprints(upload) if stored is None else stored_as_fingerprints(upload, stored)
    )
    picture = upload if stored is None else stored
    image_signals = ImageSignals(lambda: open_image(picture, max_side=SIGNAL_SIDE))
    lookup = lookup_in(blocking=blocking)
    screening = screen(checked, lookup=lookup, verifier=Verifier(image_signals))
    digests = Digests(*signals.bytes_hashes(_chunks(upload)))
    screening = replace(
        screening,
        lists=list_matches(upload, checked, count=record, digests=digests),
        digests=digests,
    )
    if record:
        _log(screening)
    return screening


def screen_as_upload(upload: Any) -> Screening:
    """What an upload of ``upload`` would get, its re-check included (the whole rule: refused,
    queued for review or passed), without recording anything: screened as the registered app
    would store it (``registry.upload_store_as``), else as it is. Raises the upload path's
    ``ValidationError`` for a file an upload could not use."""
    store_as = registry.upload_store_as()
    if store_as is None:
        return screen_upload(upload, record=False, blocking=False)
    stored = SimpleUploadedFile("photo.jpg", store_as(upload).read())
    return screen_upload(upload, stored=stored, record=False, blocking=False)


def screened_upload(
    upload: Any, content: bytes, *, picture: Image.Image | None = None
) -> ScreenedUpload:
    """``content`` (the re-encoding of ``upload`` that will be stored), screened. ``picture``:
    the decoded picture ``content`` was encoded from; a refusal keeps a thumbnail of it (made
    only when the screening blocks, so an accepted upload pays nothing)."""
    screening = screen_upload(upload, stored=SimpleUploadedFile("photo.jpg", content))
    thumbnail = thumbnail_jpeg(picture) if picture is not None and screening.blocked else b""
    return ScreenedUpload(content, screening, thumbnail)


def _log(screening: Screening) -> None:
    review = screening.for_review
    if review is not None:
        fp, match = review
        logger.warning(
            "upload %s is near flag #%s (low-information or a near miss): not blocked, for review",
            fp.hex,
            match.fingerprint_id,
        )
    by_list = screening.list_block
    if by_list is not None:
        logger.info(
            "refused upload %s: %s entry #%s of list %s at distance %s",
            screening.fingerprint.hex,
            by_list.signal_type,
            by_list.entry_id,
            by_list.list_name,
            by_list.distance,
        )
        return
    nearest = screening.nearest
    if nearest is None:
        return
    logger.info(
        "refused upload %s (frame %s of %s%s): banned fingerprint #%s at distance %s",
        screening.found_with.hex,
        screening.frame,
        len(screening.checked.frames),
        f", {nearest.variant_name}",
        nearest.fingerprint_id,
        nearest.distance,
    )


def record_refused_upload(
    *,
    user: AbstractBaseUser | None,
    ip: str | None,
    code: str,
    screening: Screening | None = None,
    thumbnail: bytes = b"",
) -> RefusedUpload:
    """Remember a refused upload for moderators (who, from where, why, what it was near).

    Called by the upload view for every refusal, banned or not decodable (``screening`` None).
    Nothing of it is shown to the user; a run of ``banned_image`` rows from one user is someone
    probing the threshold. A refusal by a match keeps ``thumbnail`` (``ScreenedUpload``'s) in
    its row, private, until the keep period's purge (``notices.purge_refusal_thumbnails``).
    """
    by_list = screening.list_block if screening is not None else None
    common = {
        "user": user if user is not None and user.is_authenticated else None,
        "ip": ip,
        "code": code[:40],
        "thumbnail": (thumbnail or None) if screening is not None and screening.blocked else None,
    }
    if by_list is not None:
        refused = RefusedUpload.objects.create(
            **common,
            dhash=screening.fingerprint.signed,
            signal_entry_id=by_list.entry_id,
            distance=by_list.distance,
            found_by=f"{by_list.signal_type} in list {by_list.list_name}"[:60],
        )
    else:
        match = screening.nearest if screening is not None else None
        fingerprint = screening.found_with if screening is not None else None
        refused = RefusedUpload.objects.create(
            **common,
            dhash=fingerprint.signed if match is not None else None,
            nearest_id=match.fingerprint_id if match is not None else None,
            distance=match.distance if match is not None else None,
            variant=match.variant if match is not None else None,
            found_by=match.found_by_kind if match is not None else "",
        )
    if refused.thumbnail is not None:
        notices.schedule_purge(refused.created_at + notices.keep_period())
    if refused.code == "banned_image":
        # A flag refusing many people's uploads may be a mistake; many refusals of one person
        # are someone probing (a list entry's refusals too). Both are counted from these rows.
        if refused.nearest_id is not None:
            flood_guard.note_refusal(flagged_id=refused.nearest_id)
        probing.note_attempt(user_id=refused.user_id, ip=refused.ip)
    # The decision as a log event too (no IP: that stays in the table, for moderators).
    decisions.info(
        "upload refused: %s",
        refused.code,
        extra={
            "event": "moderation.upload_refused",
            "refused_upload_id": refused.pk,
            "code": refused.code,
            "uploader_id": refused.user_id,
            "fingerprint_id": refused.nearest_id,
            "signal_entry_id": refused.signal_entry_id,
            "distance": refused.distance,
            "found_by": refused.variant_name,
        },
    )
    return refused
