"""PDQ: the 256-bit perceptual hash hash-sharing exchanges speak, with its quality score.

Pure functions, no ORM. The hash is Meta's PDQ as the ``pdqhash`` package computes it, fed the
way python-threatexchange feeds it (``PdqSignal``: the image's pixels as an RGB array, a grey
image repeated on three channels), so that a file hashed here and by a partner running
threatexchange or HMA gives the same hex at full size. Here it is taken from the decode the
dHash already made (``decoding.decode_for_hashing``: luma only for a JPEG, which is exactly the
luma PDQ computes from RGB), reduced to at most ``MAX_SIDE`` pixels, since PDQ itself reduces
every image to 64x64: a few bits from the full-size hash, far inside ``MATCH_DISTANCE``
(``benchmarks/pdq_size.py`` measures drift, catches and time per size; docs/exchange.md).

PDQ's own rule, from threatexchange's ``pdq_utils``: two hashes match when their Hamming
distance is ``<= PDQ_CONFIDENT_MATCH_THRESHOLD`` (31 of 256 bits). A hash whose quality is
below ``MIN_QUALITY`` (a flat or nearly featureless picture) never blocks on its own.

The dihedral hashes (the 8 flips and quarter turns, ordered as ``variants.VARIANTS`` 0-7) are
the PDQs of the turned pixels, as a turned copy's upload is hashed. ``pdqhash.compute_dihedral``
derives them from one computation, but on drawn test scenes its turned hashes were 12-30 bits
from the turned pictures' own, at the edge of the match distance; turning costs 8 hashes of an
image of at most ``MAX_SIDE`` (a few ms each), once per flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pdqhash
from PIL import Image
from threatexchange.signal_type.pdq.pdq_utils import PDQ_CONFIDENT_MATCH_THRESHOLD
from threatexchange.signal_type.pdq.signal import PdqSignal

from moderation.variants import ORIENTATIONS

BITS = 256
HEX_DIGITS = BITS // 4
# Matches are within this many bits, inclusive (<=): threatexchange's confident-match line.
MATCH_DISTANCE = PDQ_CONFIDENT_MATCH_THRESHOLD
# PDQ quality 0-100; below this a hash is too featureless to block anything on its own
# (threatexchange's PdqSignal drops such hashes altogether: 50).
MIN_QUALITY = PdqSignal.QUALITY_THRESHOLD
# Longest side an image is reduced to before hashing (PDQ works on 64x64 anyway), by an
# integer box reduction: a ~2 MP upload is hashed at about 577 px. On the corpus, against the
# partner's full-size hash: 3.7 bits apart on average at 768 (2.1 at 1024), the same edited
# copies within the match distance, and half the time of 1024 (3.4 ms against 6.3 a hash, a
# tenth of an upload's CPU). benchmarks/pdq_size.py.
MAX_SIDE = 768

_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Pdq:
    """A PDQ hash (64 lowercase hex digits) and PDQ's quality score for it (0-100)."""

    hex: str
    quality: int

    @property
    def blocks_alone(self) -> bool:
        """Whether a match of this hash may block by itself (quality >= ``MIN_QUALITY``)."""
        return self.quality >= MIN_QUALITY


def normalize(text: str) -> str:
    """``text`` as 64 lowercase hex digits; ``ValueError`` saying what is wrong otherwise."""
    value = text.strip().lower()
    if len(value) != HEX_DIGITS:
        raise ValueError(f"a PDQ hash is {HEX_DIGITS} hex digits, got {len(value)}")
    if not _HEX.match(value):
        raise ValueError("a PDQ hash is hex digits (0-9, a-f)")
    return value


def distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hex strings (both already normalised)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _reduced(image: Image.Image) -> Image.Image:
    """``image`` box-reduced to at most ``MAX_SIDE`` pixels, grey (``L``) or ``RGB``."""
    if max(image.size) > MAX_SIDE:
        image = image.reduce(-(-max(image.size) // MAX_SIDE))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def _pixels(image: Image.Image) -> np.ndarray:
    """The array pdqhash takes (height x width x 3 uint8), as threatexchange builds it.

    A grey image is its one channel seen three times (a zero stride, not a copy): pdqhash
    reads the three channels back into luma with the same arithmetic either way, so the hash
    is the same bits, and the copy and its strided reads were a fifth of the hash's time.
    pdqhash's buffer argument must be writable; it only reads it.
    """
    array = np.array(_reduced(image))  # a writable copy
    if array.ndim == 3:
        return array
    height, width = array.shape
    return np.lib.stride_tricks.as_strided(
        array, shape=(height, width, 3), strides=(*array.strides, 0), writeable=True
    )


def _hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def pdq_of_image(image: Image.Image) -> Pdq:
    """The PDQ of a prepared (upright) image."""
    bits, quality = pdqhash.compute(_pixels(image))
    return Pdq(_hex(bits), int(quality))


def dihedral_of_image(image: Image.Image) -> list[Pdq]:
    """The PDQ of each orientation of ``image``, indexed as ``variants.VARIANTS`` 0-7."""
    reduced = _reduced(image)  # reduced once, then turned
    return [
        pdq_of_image(reduced if turn is None else reduced.transpose(turn))
        for _label, turn in ORIENTATIONS
    ]
