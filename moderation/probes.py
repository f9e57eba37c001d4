"""The stored form of an image's probes: its cuts and framed picture as packed int64 triples.

An upload is compared not only whole but also as a few cuts (``variants.UPLOAD_CUTS``) and as
the picture inside a flat frame (``hashing.CheckFingerprints``). A stored image keeps those
fingerprints beside its own, so that a sweep or a recheck compares it as the upload path did.

A probe is three little-endian signed 64-bit integers: the variant number (``EVERY_VARIANT``
for the framed picture, which is compared with every variant), the signed dHash and the signed
pHash. Packed bytes rather than JSON, so that reading many images' probes at once (the impact
preview) is one ``np.frombuffer`` instead of one parse per image.

``hashing.CheckFingerprints.probe_bytes`` packs an upload's probes and
``hashing.probes_from_bytes`` turns stored bytes back into fingerprints; this module is only
the format, with no idea of a fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PROBE_DTYPE = np.dtype("<i8")
# The variant number stored for the framed picture: it is compared with every variant.
EVERY_VARIANT = -1


def pack_probes(rows: Iterable[tuple[int | None, int, int | None]]) -> bytes:
    """``(variant number or None for the framed picture, signed dHash, signed pHash)`` rows
    packed for storage. A probe always has a pHash (the current pipeline computes one)."""
    flat = [
        value
        for number, dhash, phash in rows
        for value in (EVERY_VARIANT if number is None else number, dhash, phash or 0)
    ]
    return np.array(flat, PROBE_DTYPE).tobytes()


def unpack_probes(data: bytes | memoryview | None) -> np.ndarray:
    """Stored probe bytes as an int64 array of shape (n, 3); (0, 3) for none."""
    return np.frombuffer(bytes(data or b""), PROBE_DTYPE).reshape(-1, 3)
