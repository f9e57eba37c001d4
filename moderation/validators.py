"""The upload validator: refuse an image that is near a banned fingerprint.

Users get one generic message; which banned image matched, and how close, is staff-only
information (it would let someone probe the threshold) and goes to the log instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from moderation import matching, registry
from moderation.hashing import (
    CheckFingerprints,
    Fingerprint,
    check_fingerprints,
    fingerprint,
    further_frame_fingerprints,
)

logger = logging.getLogger(__name__)

# The validator leaves the fingerprint on the file object so the code that saves the upload
# stores it without decoding the image a second time.
FINGERPRINT_ATTR = "_moderation_fingerprint"
# ...and, when it refuses a banned image, the nearest match (staff-only: the view records it in
# a RefusedUpload row, never shows it).
MATCH_ATTR = "_moderation_match"
# An app that stores a re-encoding of the upload can have the validator check that instead (what
# will be stored and shown, and one decode fewer): ``checked_instead(upload, stored_file,
# further_frames)`` links the two and hands over the fingerprints of the upload's other frames.
CHECKED_AS_ATTR = "_moderation_checked_as"
# ...and the upload's cuts and framed picture (``CheckFingerprints.probe_bytes``), stored beside
# the fingerprint for the sweeps.
PROBES_ATTR = "_moderation_probes"
FURTHER_FRAMES_ATTR = "_moderation_further_frames"


def checked_instead(upload: Any, replacement: Any, further_frames: list[Fingerprint]) -> Any:
    """Have ``replacement`` (a re-encoding of ``upload``'s first frame) checked in its place.

    The validator then compares the replacement's fingerprint and ``further_frames`` (those of
    the upload's frames 2..N, ``hashing.further_frame_fingerprints``) with the banned set, and
    ``refusal_of(upload)`` reports what it found. Returns ``replacement``.
    """
    setattr(replacement, FURTHER_FRAMES_ATTR, list(further_frames))
    setattr(upload, CHECKED_AS_ATTR, replacement)
    return replacement


def upload_fingerprints(file: Any) -> CheckFingerprints:
    """The fingerprints an upload of ``file`` is checked with: frames (first first), the
    first frame's cuts and the picture inside its frame.

    Where the registered app stores a re-encoding (``registry.ImageTarget.store_as``) and checks
    that, as the profile form does: the re-encoding's fingerprint, then the upload's further
    frames; otherwise every frame of the file as it is. For tools that must decide as the upload
    path does (``evaluate_matching``). ``check_image`` looks up the file's own fingerprint, as
    ``flag_images`` hashes it: a file and its re-encoding are usually 0-2 bits apart.
    """
    store_as = registry.upload_store_as()
    if store_as is None:
        return check_fingerprints(file)
    stored = check_fingerprints(store_as(file))
    return CheckFingerprints(
        [*stored.frames, *further_frame_fingerprints(file)], stored.cuts, stored.inner
    )


def fingerprint_of(file: Any) -> Fingerprint:
    """The fingerprint the validator computed for this upload, or compute it now."""
    fp = getattr(file, FINGERPRINT_ATTR, None)
    return fp if fp is not None else fingerprint(file)


def probe_bytes_of(file: Any) -> bytes:
    """The packed probes (``CheckFingerprints.probe_bytes``) the validator computed for this
    upload, or compute them now."""
    packed = getattr(file, PROBES_ATTR, None)
    return packed if packed is not None else check_fingerprints(file).probe_bytes()


def refusal_of(file: Any) -> tuple[Fingerprint | None, matching.Match | None]:
    """What the validator found for a file it refused as banned: (fingerprint, nearest match)."""
    file = getattr(file, CHECKED_AS_ATTR, file)
    return getattr(file, FINGERPRINT_ATTR, None), getattr(file, MATCH_ATTR, None)


def _remember(value: Any, name: str, what: Any) -> None:
    setattr(value, name, what)
    if getattr(value, "file", None) is not None:
        setattr(value.file, name, what)


def _further_frames(value: Any) -> list[Fingerprint]:
    for holder in (value, getattr(value, "file", None)):
        frames = getattr(holder, FURTHER_FRAMES_ATTR, None)
        if frames is not None:
            return frames
    return []


@deconstructible
class BannedImageValidator:
    """Refuses a file that matches an active ban (``moderation.matching``: dHash within
    ``MODERATION_MAX_DISTANCE`` of any variant -- orientation or crop -- of a flagged image,
    confirmed by pHash).

    Every frame of an animation is compared (bounded, see ``hashing.check_fingerprints``): a
    banned picture hidden as frame 7 is refused like one shown first. Also refuses anything that
    is not a safely decodable JPEG, PNG, GIF or WebP, with the specific error from
    ``moderation.hashing``.
    """

    message = _("This image can't be used as a profile photo.")
    code = "banned_image"

    def __init__(self, message: str | None = None, code: str | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code

    def __call__(self, value: Any) -> None:
        # A FieldFile that is already stored (the form re-validating an unchanged photo) was
        # checked when it was uploaded; the sweep covers it since.
        if getattr(value, "_committed", False) is True:
            return
        checked = check_fingerprints(value)
        frames = checked.frames + _further_frames(value)
        _remember(value, FINGERPRINT_ATTR, frames[0])
        _remember(value, PROBES_ATTR, checked.probe_bytes())
        banned = matching.banned_set()
        banned.sync()  # once for all frames
        verdicts = [
            (
                matching.without_allowed(
                    banned.check(
                        fp,
                        sync=False,
                        cuts=checked.cuts if i == 0 else None,
                        inner=checked.inner if i == 0 else None,
                    ),
                    fp,
                ),
                fp,
            )
            for i, fp in enumerate(frames)
        ]
        for verdict, fp in verdicts:
            if verdict.decision == matching.REVIEW:
                logger.warning(
                    "upload %s is near flag #%s (low-information or a near miss): not blocked, "
                    "for review",
                    fp.hex,
                    verdict.for_review.fingerprint_id,
                )
        found = [(verdict.nearest, fp) for verdict, fp in verdicts if verdict.blocked]
        if found:
            nearest, fp = min(found, key=lambda pair: pair[0].distance)
            frame = frames.index(fp) + 1
            # Distances found by a cut or the framed picture are from that: record its hash.
            if nearest.by_cut:
                fp = checked.cuts[nearest.variant]
            elif nearest.by_inner:
                fp = checked.inner
            _remember(value, FINGERPRINT_ATTR, fp)
            _remember(value, MATCH_ATTR, nearest)
            logger.info(
                "refused upload %s (frame %s of %s%s): banned fingerprint #%s at distance %s",
                fp.hex,
                frame,
                len(frames),
                f", cut as the {nearest.variant_label}" if nearest.by_cut
                else ", the picture inside its frame" if nearest.by_inner
                else "",
                nearest.fingerprint_id,
                nearest.distance,
            )
            raise ValidationError(self.message, code=self.code)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BannedImageValidator)
            and self.message == other.message
            and self.code == other.code
        )
