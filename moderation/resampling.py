"""Pillow's fixed-point Lanczos resize, computed from a reduced image and its cell counts.

``imagehash.dhash(img)`` is ``img.convert("L").resize((9, 8), LANCZOS)``: Pillow's two-pass
fixed-point resampler (``src/libImaging/Resample.c``). The fingerprint of a large JPEG hashes
its reduced decode *expanded* back to full size (``decoding.Decoded``: every sample repeated
over ``cells_x[i] x cells_y[j]`` pixels), and building that image would cost what the reduced
decode saved. It need not be built: each pass's sum over the repeated pixels is the sample
times the sum of their integer weights, so summing Pillow's integer weights per cell reproduces
every intermediate and final byte exactly, from the reduced pixels.

The same code makes the 9x8 thumbnail of a full-size image (cells all 1), as BLAS products: the
same bytes as Pillow's resize in about half the time (docs/fingerprinting.md).

The emulation is pinned to Pillow by tests (tests/test_hashing_fast_path.py): a Pillow release
that changes its resampler fails them instead of drifting silently.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8-bit results, 2 bits of headroom
_LANCZOS_SUPPORT = 3.0


def _sinc(x: np.ndarray) -> np.ndarray:
    out = np.ones_like(x)
    nonzero = x != 0.0
    scaled = x[nonzero] * np.pi
    out[nonzero] = np.sin(scaled) / scaled
    return out


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -_LANCZOS_SUPPORT) & (x < _LANCZOS_SUPPORT)
    out = np.zeros_like(x)
    out[inside] = _sinc(x[inside]) * _sinc(x[inside] / 3)
    return out


@lru_cache(maxsize=64)
def _pillow_weights(in_size: int, out_size: int) -> np.ndarray:
    """Resample.c's precompute_coeffs + normalize_coeffs_8bpc: out_size x in_size int64."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    # C's (int) casts truncate toward zero, as astype does.
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(max(int(xmax.max()), 0))
    used = taps[None, :] < xmax[:, None]
    positions = (xmin[:, None] + taps[None, :]).astype(np.float64)
    k = np.where(used, _lanczos((positions - centers[:, None] + 0.5) * (1.0 / filterscale)), 0.0)
    # C sums left to right; cumsum does too, and the zeros past xmax leave the total alone.
    totals = np.cumsum(k, axis=1)[:, -1:]
    k = np.divide(k, totals, out=k.copy(), where=totals != 0.0)
    fixed = k * (1 << _PRECISION_BITS)
    fixed = np.where(k < 0, fixed - 0.5, fixed + 0.5).astype(np.int64)
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    rows, cols = np.nonzero(used)
    weights[rows, xmin[rows] + cols] = fixed[rows, cols]
    return weights


def _cell_weights(cells: np.ndarray, out_size: int) -> np.ndarray:
    """Pillow's integer weights over the expanded side, summed per cell; as float64."""
    weights = _pillow_weights(int(cells.sum()), out_size)
    starts = np.concatenate(([0], np.cumsum(cells)[:-1]))
    # float64 holds every partial sum exactly: |sample x weight| < 2^8 * 2^23, a few thousand terms.
    return np.add.reduceat(weights, starts, axis=1).astype(np.float64)


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Resample.c's rounding (start at one half) and clip8 (floor shift, clamp to 0..255)."""
    shifted = np.floor((sums + (1 << (_PRECISION_BITS - 1))) / (1 << _PRECISION_BITS))
    return np.clip(shifted, 0, 255)


# OpenBLAS runs a product on one thread up to m*n*k = 65536 * 4 (interface/gemm.c); above it
# wakes its threads, whose spin-waiting makes a product's time erratic on a busy machine, many
# times its single-threaded cost. Column blocks under the limit keep it steady.
_SINGLE_THREAD_PRODUCT = 65536 * 4


def _narrow_matmul(small: np.ndarray, big: np.ndarray) -> np.ndarray:
    """``small @ big`` for a few-row ``small``, in column blocks that stay single-threaded.

    ``big`` may be the uint8 pixels (or a transposed view of them): each block is converted to
    float64 on its own, so the copy stays in the cache instead of a whole-image float64 array
    going through memory (faster, and exactly the same sums).
    """
    step = max(1, _SINGLE_THREAD_PRODUCT // (small.shape[0] * small.shape[1]))
    out = np.empty((small.shape[0], big.shape[1]))
    for start in range(0, big.shape[1], step):
        block = big[:, start : start + step].astype(np.float64)
        np.matmul(small, block, out=out[:, start : start + step])
    return out


def horizontal_first(width: int, height: int, size: tuple[int, int]) -> bool:
    """Whether Pillow 13 resizes ``width x height`` to ``size`` across first (it does unless
    the height shrinks more than twice as much as the width: ImagingResampleInner); the
    rounding in between depends on the order."""
    return 2 * (width - size[0]) >= height - size[1]


def horizontal_pass(pixels: np.ndarray, cells_x: np.ndarray, out_width: int) -> np.ndarray:
    """The first (horizontal) pass of the resize to ``out_width``, rounded to bytes as Pillow
    keeps it: ``out_width x rows``, column ``j`` from row ``j`` of ``pixels`` alone. So a cut
    that keeps every column (the top, the bottom, a caption band) is a slice of the whole
    picture's pass; ``lanczos_thumbnail_of_expanded(..., across=...)`` takes it."""
    return _clip8(_narrow_matmul(_cell_weights(cells_x, out_width), pixels.T))


def lanczos_thumbnail_of_expanded(
    pixels: np.ndarray,
    cells_x: np.ndarray,
    cells_y: np.ndarray,
    size: tuple[int, int],
    *,
    across: np.ndarray | None = None,
) -> np.ndarray:
    """``Image.fromarray(expanded).resize(size, LANCZOS)`` as uint8, without ``expanded``.

    ``expanded`` is the 2-D grey ``pixels`` with column ``i`` repeated ``cells_x[i]`` times and
    row ``j`` repeated ``cells_y[j]`` times; all ones for the resize of ``pixels`` itself.
    ``across``: ``horizontal_pass(pixels, cells_x, size[0])`` when the caller has it already
    (only for a resize that goes across first).
    """
    width, height = int(cells_x.sum()), int(cells_y.sum())
    vertical = _cell_weights(cells_y, size[1])  # size[1] x reduced height
    if horizontal_first(width, height, size):
        if across is None:
            across = horizontal_pass(pixels, cells_x, size[0])  # size[0] x reduced height
        out = _clip8(vertical @ across.T)
    else:
        if across is not None:
            raise ValueError("this resize goes down first: a horizontal pass does not apply")
        horizontal = _cell_weights(cells_x, size[0])  # size[0] x reduced width
        down = _clip8(_narrow_matmul(vertical, pixels))  # size[1] x reduced width
        out = _clip8(horizontal @ down.T).T
    return out.astype(np.uint8)
