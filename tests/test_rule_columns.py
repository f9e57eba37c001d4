"""The numpy column form of the match rule agrees with the rule itself.

The impact preview compares a few new variants with every stored image through
``hash_columns.HashColumns`` (``MatchRule.matches_columns``); the sweep that follows the flag
screens each stored image through ``BannedIndex.check`` (``MatchRule.matches``). The preview
promises what the sweep will do, so on the same fingerprints both must say the same: which
stored images are blocked, and at what dHash distance.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image, ImageOps

from moderation.banned_index import BannedIndex, entry_key, list_policy
from moderation.hash_columns import HashColumns
from moderation.hashing import (
    Fingerprint,
    check_fingerprints,
    fingerprint_variants,
    probes_from_bytes,
)
from moderation.matching import MatchRule
from moderation.probes import EVERY_VARIANT, pack_probes
from moderation.variants import UPLOAD_CUTS, VARIANTS
from tests import images

FLAG = 1
LOW_FLAG = 2  # low information is a property of a flag: all its variants share it


def _flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _both_forms(entries, stored, *, list_distance=None):
    """Per stored image, the dHash distance of the match that blocks it or -1: by the index and
    by the columns, for ``entries`` (variant, fingerprint, low information: the low ones belong
    to a low-information flag of their own) and ``stored`` rows (pk, fingerprint, probes)."""
    rule = MatchRule.from_settings()
    policy = list_policy(list_distance, False)
    index = BannedIndex()
    index.build(
        (entry_key(LOW_FLAG if low else FLAG, number), fp.dhash, fp.phash, low, policy)
        for number, fp, low in entries
    )
    by_index = {}
    for pk, fp, probes in stored:
        cuts, inner = probes_from_bytes(probes)
        verdict = index.check(fp, rule, cuts=cuts, inner=inner)
        by_index[pk] = verdict.nearest.distance if verdict.blocked else -1
    columns = HashColumns.load(
        (pk, fp.signed, fp.phash_signed, probes) for pk, fp, probes in stored
    )
    pks, nearest = columns.nearest_matches(entries, rule=rule, list_distance=list_distance)
    return by_index, dict(zip(pks.tolist(), nearest.tolist()))


@pytest.mark.parametrize("list_distance", [None, 6, 14])
@pytest.mark.parametrize("seed", range(4))
def test_random_fingerprints_near_and_far_get_the_same_answer_from_both_forms(seed, list_distance):
    rng = random.Random(seed)
    entries = []
    for number in range(len(VARIANTS)):
        phash = None if number == 3 else rng.getrandbits(64)  # one entry without a pHash
        entries.append((number, Fingerprint(rng.getrandbits(64), phash=phash), number == 5))
    stored = []
    for pk in range(1, 401):
        number, base, _ = rng.choice(entries)
        dhash = _flip(base.dhash, rng.randint(0, 20), rng)
        phash = None if rng.random() < 0.1 else _flip(base.phash or 0, rng.randint(0, 28), rng)
        probes = []
        if rng.random() < 0.5:  # cuts, near the same variant of the flag or near another one
            for cut in UPLOAD_CUTS:
                near = rng.choice([e for e in entries if e[0] in (cut, number)])[1]
                probes.append(
                    (
                        cut,
                        _signed(_flip(near.dhash, rng.randint(0, 16), rng)),
                        _signed(_flip(near.phash or 0, rng.randint(0, 24), rng)),
                    )
                )
        if rng.random() < 0.3:  # the picture inside a frame, compared with every variant
            near = rng.choice(entries)[1]
            probes.append(
                (
                    None,
                    _signed(_flip(near.dhash, rng.randint(0, 16), rng)),
                    _signed(_flip(near.phash or 0, rng.randint(0, 24), rng)),
                )
            )
        stored.append((pk, Fingerprint(dhash, phash=phash), pack_probes(probes)))

    by_index, by_columns = _both_forms(entries, stored, list_distance=list_distance)

    assert by_columns == by_index
    blocked = sum(d >= 0 for d in by_index.values())
    assert 40 < blocked < 360  # both sides of the rule are exercised


def _stored_as_uploaded(img: Image.Image) -> tuple[Fingerprint, bytes]:
    checked = check_fingerprints(io.BytesIO(images.encode(img)))
    return checked.frames[0], checked.probe_bytes()


def test_real_photos_and_their_edits_get_the_same_answer_from_both_forms():
    flagged = images.photo(91, (800, 600))
    entries = [
        (number, fp, False)
        for number, fp in enumerate(fingerprint_variants(io.BytesIO(images.encode(flagged))))
    ]
    w, h = flagged.size
    copies = [
        flagged,
        images.recompressed(flagged, 40),
        images.brightened(flagged, 1.2),
        ImageOps.mirror(flagged),
        flagged.rotate(90, expand=True),
        flagged.rotate(3, expand=False),
        flagged.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9))),
        images.captioned(flagged),
        ImageOps.expand(flagged, border=(120, 40), fill="white"),
        *[images.photo(seed, (800, 600)) for seed in range(92, 100)],  # strangers
    ]
    stored = [(pk, *_stored_as_uploaded(img)) for pk, img in enumerate(copies, start=1)]
    # The framed picture is among what is compared: the padded copy has one.
    assert any(
        EVERY_VARIANT in np.frombuffer(probes, "<i8").reshape(-1, 3)[:, 0]
        for _, _, probes in stored
    )

    by_index, by_columns = _both_forms(entries, stored)

    assert by_columns == by_index
    assert by_index[1] == 0 and all(by_index[pk] == -1 for pk in range(10, 18))
