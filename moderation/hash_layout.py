"""How the multi-index splits the 64 bits of a dHash into chunks, and the bit permutation
that makes each chunk a contiguous field (``fingerprint_index``'s tables are keyed by them).

Chunks are chosen on a sample of the stored hashes, greedily, so that correlated dHash bits
(neighbouring comparisons of the same thumbnail row) do not share a chunk: a chunk whose bits
move together has few distinct values and large buckets. Why, and what it measured:
``docs/fingerprint-index.md``.
"""

from __future__ import annotations

import numpy as np

from moderation.linear_index import HASH_BITS


def chunk_widths(chunk_bits: int) -> tuple[int, ...]:
    m = -(-HASH_BITS // chunk_bits)
    return tuple(HASH_BITS // m + (k < HASH_BITS % m) for k in range(m))


def choose_chunks(sample: np.ndarray, widths: tuple[int, ...]) -> list[list[int]]:
    """Partition the 64 bit positions into chunks of the given widths (see module docstring)."""
    bits = ((sample[:, None] >> np.arange(HASH_BITS, dtype=np.uint64)) & np.uint64(1)).astype(
        np.int64
    )
    p = bits.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nan_to_num(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    pairs = max(len(sample) * (len(sample) - 1), 1)
    members: list[list[int]] = [[] for _ in widths]
    keys = np.zeros((len(widths), len(sample)), dtype=np.int64)
    collision = [1.0] * len(widths)
    for b in np.argsort(-entropy, kind="stable").tolist():
        best: tuple[float, int, np.ndarray, float] | None = None
        for k, width in enumerate(widths):
            if len(members[k]) == width:
                continue
            candidate = keys[k] | (bits[:, b] << len(members[k]))
            counts = np.bincount(candidate)
            c = float((counts * (counts - 1)).sum()) / pairs
            if best is None or collision[k] - c > best[0]:
                best = (collision[k] - c, k, candidate, c)
        assert best is not None
        _, k, candidate, c = best
        keys[k], collision[k] = candidate, c
        members[k].append(b)
    return members


class Layout:
    """A bit permutation that makes chunk k a contiguous field of the permuted hash.

    Chunk 0 lands in the top bits, chunk 1 below it, and so on. Hamming distance is the same
    before and after permuting, so the index stores and compares permuted hashes only, and a
    chunk's value is a shift and a mask.
    """

    def __init__(self, chunks: list[list[int]]) -> None:
        self.chunks = [list(c) for c in chunks]
        self.widths = tuple(len(c) for c in chunks)
        self.shifts = tuple(HASH_BITS - sum(self.widths[: k + 1]) for k in range(len(chunks)))
        target = np.empty(HASH_BITS, dtype=np.uint64)
        for positions, shift in zip(chunks, self.shifts):
            target[positions] = shift + np.arange(len(positions), dtype=np.uint64)
        self._forward = self._tables(np.arange(HASH_BITS, dtype=np.uint64), target)
        self._inverse = self._tables(target, np.arange(HASH_BITS, dtype=np.uint64))
        self._forward_lists = self._forward.tolist()

    @staticmethod
    def _tables(source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """tables[j][v]: the bits that byte j of a hash, equal to v, contributes after moving."""
        tables = np.zeros((8, 256), dtype=np.uint64)
        values = np.arange(256, dtype=np.uint64)
        for s, t in zip(source.tolist(), target.tolist()):
            tables[s // 8] |= ((values >> np.uint64(s % 8)) & np.uint64(1)) << np.uint64(t)
        return tables

    @staticmethod
    def _apply(tables: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        by_byte = np.asarray(hashes, dtype="<u8").view(np.uint8).reshape(-1, 8)
        out = tables[0][by_byte[:, 0]]
        for j in range(1, 8):
            out |= tables[j][by_byte[:, j]]
        return out

    def permute(self, hashes: np.ndarray) -> np.ndarray:
        return self._apply(self._forward, hashes)

    def unpermute(self, permuted: np.ndarray) -> np.ndarray:
        return self._apply(self._inverse, permuted)

    def permute_one(self, q: int) -> int:
        t, b = self._forward_lists, q.to_bytes(8, "little")
        return (
            t[0][b[0]] | t[1][b[1]] | t[2][b[2]] | t[3][b[3]]
            | t[4][b[4]] | t[5][b[5]] | t[6][b[6]] | t[7][b[7]]
        )  # fmt: skip
