"""Test images drawn in code: real structure (gradients, shapes, text), never binary fixtures.

``photo(seed)`` draws a different scene per seed; the edit helpers make the copies people
actually upload (resized, re-compressed, brightened) and ``at_distance`` makes a copy whose
fingerprint sits exactly N bits from the original, to test both sides of the threshold.
"""

from __future__ import annotations

import io
import random

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from moderation.hashing import fingerprint_image, hamming
from profiles.demo import draw_scene


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A scene: a two-colour gradient sky, overlapping shapes and a line of text."""
    return draw_scene(random.Random(seed), size, f"scene {seed}")


def textured(img: Image.Image, seed: int = 0, strength: int = 40) -> Image.Image:
    """``img`` with a fine, blotchy texture, as real photos have (foliage, fabric, grain): what
    local features (``moderation.verification``) find; the drawn scenes alone are flat shapes
    on a smooth gradient, too featureless to verify once cut small."""
    rng = random.Random(seed)
    noise = Image.new("L", (max(1, img.width // 3), max(1, img.height // 3)))
    noise.putdata([rng.randrange(256) for _ in range(noise.width * noise.height)])
    noise = noise.resize(img.size, Image.Resampling.BICUBIC)
    grain = Image.merge("RGB", [noise] * 3)
    return Image.blend(img, grain, strength / 255)


def encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    img.save(out, format=fmt, **params)
    return out.getvalue()


def upload(img: Image.Image, name: str = "photo.jpg", fmt: str = "JPEG", **params):
    """The image as the file a browser would post."""
    content_type = {
        "JPEG": "image/jpeg",
        "PNG": "image/png",
        "GIF": "image/gif",
        "WEBP": "image/webp",
    }.get(fmt, "application/octet-stream")
    return SimpleUploadedFile(name, encode(img, fmt, **params), content_type)


def resized(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.LANCZOS)


def recompressed(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(img, "JPEG", quality=quality))).convert("RGB")


def brightened(img: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(factor)


def captioned(img: Image.Image, lines: int = 2) -> Image.Image:
    """Meme captions: ``lines`` lines of big white capitals with a black outline at the top and
    as many at the bottom, each 1/9 of the height."""
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // 9)
    font = ImageFont.load_default(size=size)
    for i in range(lines):
        for text, y in (
            ("WHEN YOU SEE IT", size // 3 + i * size),
            ("NOBODY EXPECTED THIS", out.height - size * (lines - i) - size // 3),
        ):
            x = (out.width - draw.textlength(text, font=font)) / 2
            draw.text((x, y), text, font=font, fill="white", stroke_width=max(1, size // 12),
                      stroke_fill="black")
    return out


def cut_distances(original: Image.Image, copy: Image.Image) -> dict[int, int]:
    """dHash bits between ``copy`` and ``original`` as the upload path also compares them: cut
    as each of ``variants.UPLOAD_CUTS`` (centre, caption band), variant number -> bits."""
    from moderation.variants import UPLOAD_CUTS, VARIANTS, crop_box

    def cut(img: Image.Image, number: int) -> Image.Image:
        return img.crop(crop_box(img.size, VARIANTS[number].cut))

    return {
        n: fingerprint_image(cut(copy, n)).distance(fingerprint_image(cut(original, n)))
        for n in UPLOAD_CUTS
    }


def near_miss(img: Image.Image, bits: int = 7, seed: int = 5, beyond: int = 4) -> Image.Image:
    """A copy of ``img`` ``bits`` dHash bits away, blemished in the middle so that its cuts
    (centre, caption band; compared too at upload and by sweeps) are more than ``beyond`` bits
    from the original's: a near miss under ``narrow_distances``, not a match through a cut."""
    for attempt in range(20):  # another blemish pattern when the cuts moved too little
        near = at_distance(img, bits, seed=seed + 1000 * attempt, inside=(0.2, 0.2, 0.7, 0.7))
        if min(cut_distances(img, near).values()) > beyond:
            return near
    raise AssertionError(f"no copy {bits} bits away whose cuts move more than {beyond} bits")


def at_distance(
    img: Image.Image,
    bits: int,
    seed: int = 0,
    tries: int = 4000,
    inside: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> Image.Image:
    """A copy of ``img`` whose dHash is exactly ``bits`` away from the original's.

    Paints small random rectangles one at a time, keeping each only if it does not overshoot,
    so the result still looks like the original with a few blemishes. PNG keeps it lossless.
    ``inside`` (left, top, right, bottom, as fractions) is where the rectangles start: e.g. the
    middle of the picture, so that its centre moves as much as the whole.
    """
    rng = random.Random(seed)
    target = fingerprint_image(img).dhash
    current = img.copy()
    w, h = img.size
    left, top, right, bottom = inside
    for _ in range(tries):
        distance = hamming(fingerprint_image(current).dhash, target)
        if distance == bits:
            return current
        candidate = current.copy()
        x = rng.randrange(int(w * left), max(int(w * left) + 1, int(w * right)))
        y = rng.randrange(int(h * top), max(int(h * top) + 1, int(h * bottom)))
        size = rng.randint(w // 30, w // 8)
        ImageDraw.Draw(candidate).rectangle(
            [x, y, x + size, y + size], fill=tuple(rng.randrange(256) for _ in range(3))
        )
        if hamming(fingerprint_image(candidate).dhash, target) <= bits:
            current = candidate
    raise AssertionError(f"could not make a copy exactly {bits} bits away")
