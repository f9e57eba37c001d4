"""Verify a candidate match with local features before it blocks: ORB keypoints + RANSAC.

Pure functions, no ORM. The dHash finds candidates and the pHash confirms them, but two 64-bit
global hashes of *different* small, smooth pictures (sky, fog, skin, a blurred background)
collide often enough that a banned set of 100k-1M flags would block innocent photos
(``benchmarks/false_matches.py``). A candidate is therefore verified by a signal that looks at
the picture's content, not its layout: the same corners and edges, found again where one
similarity transform (shift, scale, rotation) puts them.

The signal (``signal_of``): the grey image scaled so that its longer side is at most
``MAX_SIDE`` pixels (never enlarged), up to ``MAX_KEYPOINTS`` ORB keypoints, each kept as its
position and its 256-bit descriptor. ORB is rotation-invariant (any angle, so 90°/180° turns
and a 3° tilt alike) and, through its pyramid, scale-tolerant, but not mirror-invariant: so the
*upload* side also builds the mirrored picture's keypoint set, in memory
(``signal_of(image, mirrored=True)``); the stored flag side keeps only its own picture's set.

The comparison (``compare``): every descriptor of one set matched to its two nearest in the
other by Hamming distance, kept when the nearest is clearly nearer than the second (Lowe's
ratio test, ``RATIO``) and one match per keypoint on both sides, then a RANSAC similarity
transform (``cv2.estimateAffinePartial2D``) through the kept pairs; the result is how many pairs
the transform explains (inliers). Known limit: an identical overlay on different pictures (the
same caption line, watermark or app chrome) is shared local content and can verify; it blocks
only when the two pictures' hashes collide as well.

A picture with too few keypoints (a flat colour, a smooth gradient, fog) *cannot be verified*:
``Verification.verifiable`` is False, which is a different answer from "0 inliers".

Stored form (``pack``/``unpack``), little-endian:
    header  4s magic b"ORB1", uint16 width, uint16 height (of the scaled picture),
            uint8 number of sets (1 or 2)
    per set uint16 n, then n x (uint16 x, uint16 y) in 1/``_POSITION_SCALE`` pixels,
            then n x 32 bytes of descriptor
    = 9 + 2 + 36 n bytes for one set: at most 18,011 bytes at 500 keypoints (``MAX_STORED``).

What it separates and what it costs, measured: docs/matching.md, "Verification".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from moderation.framing import picture_box

# --- The signal ----------------------------------------------------------------------------

# The picture is scaled so that its longer side is at most this (never enlarged): enough detail
# for ORB's 31-pixel patches over 8 pyramid levels, and a bounded, fast keypoint search.
MAX_SIDE = 512
# ORB keeps at most this many keypoints (the strongest by Harris score); 36 bytes each stored.
MAX_KEYPOINTS = 500
# FAST corner threshold (grey levels). OpenCV's default 20 leaves smooth pictures with too few
# keypoints: 77 of 2,160 corpus copies and 97% of collisions "cannot verify"; at 8, 5 copies
# and 86% of collisions, verified copies 95.7% -> 99.2%, collisions still <= 3 inliers, for
# ~2 ms more per signal (benchmarks/verification.py).
FAST_THRESHOLD = 8
_ORB_PARAMETERS = {"nfeatures": MAX_KEYPOINTS, "scaleFactor": 1.2, "nlevels": 8,
                   "edgeThreshold": 31, "patchSize": 31, "fastThreshold": FAST_THRESHOLD}

# --- The decision --------------------------------------------------------------------------

# Lowe's ratio test: a match is kept when nearest distance < RATIO x second-nearest distance.
RATIO = 0.8
# RANSAC: a pair is an inlier when the similarity puts it within this many pixels (in the
# scaled pictures, longer side <= MAX_SIDE) of its match.
RANSAC_THRESHOLD = 5.0
# The similarity's scale must lie within [MIN_SCALE, 1 / MIN_SCALE]: both pictures are read at
# <= MAX_SIDE, so a copy's scale stays near 1 (a screenshot shows the picture at about half
# the canvas's longer side; a 20% crop enlarges it by 1.25).
MIN_SCALE = 0.25
# A pair is *verified* a copy when inliers >= VERIFIED_MIN_INLIERS. Collisions of different
# pictures that pass the dHash+pHash rule reach 3 at most on the corpus, near misses 4; edited
# copies reach 8 and more on every edit but screenshots, captions, re-shares and padding of a
# few smooth photos (benchmarks/verification.py). RANSAC fits a similarity to 2 pairs, so 2-4
# chance inliers are normal; 8 leaves twice the worst chance count.
VERIFIED_MIN_INLIERS = 8
# A near miss is *plausibly* a copy (worth a moderator's look) when inliers >= this: above
# every chance count measured (5, in 2 of 3,615 near misses), below the copies' weakest edits.
PLAUSIBLE_MIN_INLIERS = 6
# Each side needs >= this many keypoints (in the best set) for a verification to mean
# anything; with fewer, ``verifiable`` is False ("cannot verify"), not "0 inliers".
MIN_KEYPOINTS = 2 * VERIFIED_MIN_INLIERS
# A flag needs >= this many (its picture's set): a copy loses keypoints to blur, lower contrast
# or a smaller size, and must keep MIN_KEYPOINTS to be verified. Measured on the corpus: one
# stormy sky has 25 and its blurred and darkened copies fell below 16; the next photo has 135.
MIN_FLAG_KEYPOINTS = 4 * MIN_KEYPOINTS

_MAGIC = b"ORB1"
_HEADER = struct.Struct("<4sHHB")
_COUNT = struct.Struct("<H")
_DESCRIPTOR_BYTES = 32
_POSITION_SCALE = 64  # positions in 1/64 pixel: up to 1023.98 px, MAX_SIDE fits
_BYTES_PER_KEYPOINT = 4 + _DESCRIPTOR_BYTES
# The largest stored (one-set) signal.
MAX_STORED = _HEADER.size + _COUNT.size + _BYTES_PER_KEYPOINT * MAX_KEYPOINTS


@dataclass(frozen=True)
class Keypoints:
    """One picture's keypoints: positions (n, 2) float32 in scaled pixels, descriptors (n, 32)
    uint8."""

    positions: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class Signal:
    """The scaled picture's size and its keypoint sets (the picture's own, then optionally the
    mirrored picture's, positions in the mirrored picture)."""

    size: tuple[int, int]
    sets: tuple[Keypoints, ...]

    @property
    def keypoints(self) -> int:
        return max((len(s) for s in self.sets), default=0)


def scaled_grey(image: Image.Image) -> np.ndarray:
    """The picture as the signal reads it: grey, longer side at most ``MAX_SIDE`` (area
    averaging), never enlarged."""
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    height, width = grey.shape
    factor = MAX_SIDE / max(width, height)
    if factor >= 1:
        return np.ascontiguousarray(grey)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def _keypoints(grey: np.ndarray) -> Keypoints:
    orb = cv2.ORB_create(**_ORB_PARAMETERS)
    found, descriptors = orb.detectAndCompute(grey, None)
    if descriptors is None or not found:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, _DESCRIPTOR_BYTES), np.uint8))
    positions = np.array([k.pt for k in found], dtype=np.float32)
    # Round as the stored form does, so a signal compares the same before and after storage.
    positions = np.round(positions * _POSITION_SCALE) / _POSITION_SCALE
    return Keypoints(positions.astype(np.float32), descriptors[:, :_DESCRIPTOR_BYTES])


def signal_of(image: Image.Image, *, mirrored: bool = False) -> bytes:
    """The packed verification signal of a prepared picture (any mode, upright; e.g. the grey
    ``decoding.Decoded.image`` the fingerprint reads, at whatever scale it was decoded).

    ``mirrored``: also the mirrored picture's keypoints, so that ``compare`` finds a mirrored
    copy; for the upload side only (twice the work and size; the stored flag side has one set).
    """
    grey = scaled_grey(image)
    sets = [_keypoints(grey)]
    if mirrored:
        sets.append(_keypoints(np.ascontiguousarray(grey[:, ::-1])))
    return pack(Signal((grey.shape[1], grey.shape[0]), tuple(sets)))


def framed_picture(image: Image.Image) -> Image.Image | None:
    """The picture inside a flat frame of ``image`` (a pad, a screenshot's blank space, as
    ``framing.picture_box`` finds it on the scaled grey picture), or None when it has none."""
    grey = scaled_grey(image)
    box = picture_box(grey)
    if box is None:
        return None
    factor = image.width / grey.shape[1]
    left, top, right, bottom = (round(v * factor) for v in box)
    return image.crop((left, top, min(right, image.width), min(bottom, image.height)))


def flag_signal_of(image: Image.Image) -> bytes:
    """What a flag stores: the signal of its whole picture, its own keypoint set only (an
    upload's signal carries the mirrored set, ``signal_of(..., mirrored=True)``)."""
    return signal_of(image)


def keypoint_count(data: bytes | memoryview) -> int:
    """How many keypoints a stored signal holds (its own picture's set)."""
    return unpack(data).keypoints


# --- Stored form ---------------------------------------------------------------------------


def pack(signal: Signal) -> bytes:
    """The stored form (see the module docstring)."""
    parts = [_HEADER.pack(_MAGIC, *signal.size, len(signal.sets))]
    for keypoints in signal.sets:
        positions = np.round(keypoints.positions * _POSITION_SCALE).astype("<u2")
        parts += [_COUNT.pack(len(keypoints)), positions.tobytes(),
                  np.ascontiguousarray(keypoints.descriptors, dtype=np.uint8).tobytes()]
    return b"".join(parts)


def unpack(data: bytes | memoryview) -> Signal:
    """A signal from its stored form; ``ValueError`` for bytes that are not one."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ValueError("not a verification signal: too short")
    magic, width, height, count = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError(f"not a verification signal: magic {magic!r}")
    offset, sets = _HEADER.size, []
    for _ in range(count):
        (n,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        end = offset + n * _BYTES_PER_KEYPOINT
        if end > len(data):
            raise ValueError("not a verification signal: truncated")
        positions = np.frombuffer(data, "<u2", 2 * n, offset).reshape(n, 2)
        descriptors = np.frombuffer(data, np.uint8, n * _DESCRIPTOR_BYTES, offset + 4 * n)
        sets.append(Keypoints((positions / _POSITION_SCALE).astype(np.float32),
                              descriptors.reshape(n, _DESCRIPTOR_BYTES)))
        offset = end
    if offset != len(data):
        raise ValueError("not a verification signal: trailing bytes")
    return Signal((width, height), tuple(sets))


# --- Comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """How far two pictures' local features agree.

    ``inliers``: matched keypoint pairs one similarity transform explains (best over the sets).
    ``verifiable``: both sides have >= ``MIN_KEYPOINTS`` keypoints; when False, ``inliers``
    says nothing and neither ``verified`` nor ``plausible`` can be True ("cannot verify").
    """

    inliers: int
    keypoints: tuple[int, int]
    verifiable: bool

    @property
    def verified(self) -> bool:
        """A copy: verifiable and inliers >= ``VERIFIED_MIN_INLIERS``."""
        return self.verifiable and self.inliers >= VERIFIED_MIN_INLIERS

    @property
    def plausible(self) -> bool:
        """Plausibly a copy (a near miss worth review): inliers >= ``PLAUSIBLE_MIN_INLIERS``."""
        return self.verifiable and self.inliers >= PLAUSIBLE_MIN_INLIERS


_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=False)


def _inliers(a: Keypoints, b: Keypoints) -> int:
    if len(a) < 2 or len(b) < 2:
        return 0
    pairs = _MATCHER.knnMatch(a.descriptors, b.descriptors, k=2)
    # One match per keypoint of ``b`` too (the nearest): without it many keypoints of ``a`` can
    # match one keypoint of ``b``, and a transform of scale ~0 that maps everything onto that
    # point "explains" them all (measured: up to 28 such inliers between different pictures).
    best: dict[int, cv2.DMatch] = {}
    for m, n in (p for p in pairs if len(p) == 2):
        if m.distance < RATIO * n.distance and (
            m.trainIdx not in best or m.distance < best[m.trainIdx].distance
        ):
            best[m.trainIdx] = m
    if len(best) < 3:  # two pairs always fit a similarity
        return 0
    good = list(best.values())
    source = a.positions[[m.queryIdx for m in good]]
    target = b.positions[[m.trainIdx for m in good]]
    transform, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD,
        maxIters=2000, confidence=0.99, refineIters=10,
    )
    if transform is None or mask is None:
        return 0
    # A copy is scaled by a bounded factor (both pictures are read at <= MAX_SIDE); a transform
    # outside it explains nothing a copy would.
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not MIN_SCALE <= scale <= 1 / MIN_SCALE:
        return 0
    return int(mask.sum())


def inliers(a: bytes | Signal, b: bytes | Signal) -> int:
    """The most keypoint pairs one similarity transform explains, over every set of ``a``
    against every set of ``b`` (0 when either has too few to try)."""
    sa = a if isinstance(a, Signal) else unpack(a)
    sb = b if isinstance(b, Signal) else unpack(b)
    return max((_inliers(x, y) for x, y in _set_pairs(sa, sb)), default=0)


def _set_pairs(a: Signal, b: Signal):
    """Each picture's own set against the other's sets (mirrored against mirrored would only
    repeat own against own)."""
    return [(x, y) for i, x in enumerate(a.sets) for j, y in enumerate(b.sets) if not (i and j)]


def compare(a: bytes | Signal, b: bytes | Signal) -> Verification:
    """Verify a candidate: ``a`` and ``b`` are signals (packed or not), in either order.

    Every pair of sets is matched (two matches when one side has its mirrored set), so that
    ``inliers`` is the real count a moderator can read, not the first one above the bar.
    """
    sa = a if isinstance(a, Signal) else unpack(a)
    sb = b if isinstance(b, Signal) else unpack(b)
    counts = (sa.keypoints, sb.keypoints)
    if min(counts) < MIN_KEYPOINTS:
        return Verification(0, counts, verifiable=False)
    return Verification(inliers(sa, sb), counts, verifiable=True)
