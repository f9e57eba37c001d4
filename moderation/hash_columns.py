"""Stored images' fingerprints as numpy columns: a few new fingerprints against all of them.

The impact preview of a flag compares the flag's variants with every stored image before the
flag exists. An index lookup per stored image would cost a Python loop over the table; here each
kind of stored image's hashes are loaded once into columns and each new variant is one XOR +
popcount over them, under ``matching.MatchRule.matches_columns`` (the rule's vectorised form).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from moderation.hashing import Fingerprint
from moderation.matching import MatchRule
from moderation.probes import EVERY_VARIANT, PROBE_DTYPE, unpack_probes


@dataclass(frozen=True)
class HashColumns:
    """Stored images' fingerprints as numpy columns, for comparing a few new fingerprints with
    all of them at once (the impact preview): one XOR + popcount over the column per new
    fingerprint instead of one index lookup per stored image.

    An image has one row for its own fingerprint and one per stored probe (its cuts and
    framed picture, ``hashing.CheckFingerprints.probe_bytes``), so the preview decides as the
    sweep will: a cut row is compared with that variant only, the framed picture's with every
    variant, and probe rows count only when the image's own fingerprint matches nothing.
    """

    pks: np.ndarray  # int64, one per row (an image has several rows when it stores probes)
    dhashes: np.ndarray  # uint64
    phashes: np.ndarray  # uint64 (0 where there is none)
    has_phash: np.ndarray  # bool
    variants: np.ndarray  # int16: EVERY_VARIANT (the image, its framed picture); n: n only
    whole: np.ndarray  # bool: the image's own fingerprint (False: a probe)

    @classmethod
    def load(cls, rows: Iterable[tuple]) -> HashColumns:
        """From ``(pk, signed dHash, signed pHash or None[, packed probes])`` rows, read once.
        The probes (``hashing.pack_probes``) of all rows are unpacked in one ``frombuffer``."""
        if hasattr(rows, "iterator"):  # a queryset: stream it in large chunks
            rows = rows.iterator(chunk_size=20_000)
        pks, dhashes, phashes, blobs = [], [], [], []
        for pk, dhash, phash, *probes in rows:
            pks.append(pk)
            dhashes.append(dhash)
            phashes.append(phash)
            blobs.append(bytes(probes[0] or b"") if probes else b"")
        has = np.fromiter((p is not None for p in phashes), bool, len(phashes))
        probes = unpack_probes(b"".join(blobs))
        per_image = np.fromiter((len(b) for b in blobs), np.int64, len(blobs)) // (
            3 * PROBE_DTYPE.itemsize
        )
        pk_column = np.array(pks, np.int64)
        own_phashes = np.array([0 if p is None else p for p in phashes], np.int64)
        return cls(
            np.concatenate((pk_column, np.repeat(pk_column, per_image))),
            np.concatenate((np.array(dhashes, np.int64), probes[:, 1])).view(np.uint64),
            np.concatenate((own_phashes, probes[:, 2])).view(np.uint64),
            np.concatenate((has, np.ones(len(probes), bool))),
            np.concatenate(
                (np.full(len(pks), EVERY_VARIANT, np.int16), probes[:, 0].astype(np.int16))
            ),
            np.concatenate((np.ones(len(pks), bool), np.zeros(len(probes), bool))),
        )

    def __len__(self) -> int:
        return len(self.pks)

    def nearest_matches(
        self,
        entries: Iterable[tuple[int, Fingerprint, bool]],
        *,
        rule: MatchRule,
        list_distance: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(pks, distances)``: per stored image (pks ascending), the dHash distance to the
        nearest of ``entries`` (variant number, fingerprint, low information) that it matches
        under ``rule`` (``MatchRule.matches``, with a hash list's own distance), or -1. Low-
        information entries never block, so never count."""
        nearest = np.full(len(self), 65, np.int64)
        for number, fp, low in entries:
            if low:
                continue
            d = np.bitwise_count(self.dhashes ^ np.uint64(fp.dhash)).astype(np.int64)
            p = np.bitwise_count(self.phashes ^ np.uint64(fp.phash or 0))
            has_confirm = self.has_phash & (fp.phash is not None)
            matched = rule.matches_columns(d, p, has_confirm, list_distance=list_distance)
            matched &= (self.variants == EVERY_VARIANT) | (self.variants == number)
            np.minimum(nearest, np.where(matched, d, 65), out=nearest)
        pks, image = np.unique(self.pks, return_inverse=True)
        by_whole = np.full(len(pks), 65, np.int64)
        by_probe = np.full(len(pks), 65, np.int64)
        np.minimum.at(by_whole, image[self.whole], nearest[self.whole])
        np.minimum.at(by_probe, image[~self.whole], nearest[~self.whole])
        result = np.where(by_whole < 65, by_whole, by_probe)
        result[result == 65] = -1
        return pks, result
