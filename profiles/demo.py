"""Sample photos for the local walkthrough, drawn here so a fresh clone needs nothing else.

Each is a scene (a gradient sky, overlapping shapes, a line of text) with a fine grain, as real
photos have, so that the matching's local-feature check finds something to verify. Beside each
scene: a resized, re-compressed copy (what the banned set must refuse once the scene is flagged).
They are of our own making, free to use anywhere.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SAMPLE_COUNT = 12


def draw_scene(rng: random.Random, size: tuple[int, int], label: str) -> Image.Image:
    """A two-colour gradient sky, overlapping shapes and a line of text, drawn from ``rng``
    (the tests draw their pictures with it too, ``tests/images.py``)."""
    w, h = size
    top = [rng.randrange(256) for _ in range(3)]
    bottom = [rng.randrange(256) for _ in range(3)]
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(rng.randint(6, 12)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice(("ellipse", "rectangle", "polygon"))
        if shape == "ellipse":
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == "rectangle":
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            points = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=colour)
    font = ImageFont.load_default(size=max(12, h // 12))
    draw.text((w // 20, h - h // 6), label, fill=(255, 255, 255), font=font)
    return img


def scene(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    rng = random.Random(seed)  # noqa: S311 - drawing a picture, not a secret
    w, h = size
    img = draw_scene(rng, size, f"sample {seed}")
    # A blotchy grain (foliage, fabric, sensor noise) for the local features to hold on to.
    noise = Image.new("L", (w // 3, h // 3))
    noise.putdata([rng.randrange(256) for _ in range(noise.width * noise.height)])
    grain = Image.merge("RGB", [noise.resize(size, Image.Resampling.BICUBIC)] * 3)
    return Image.blend(img, grain, 40 / 255)


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def write_samples(folder: Path, count: int = SAMPLE_COUNT) -> list[Path]:
    """Write ``photos/sample-NN.jpg`` and ``copies/sample-NN-small.jpg``; return the photos."""
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    (folder / "copies").mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(1, count + 1):
        img = scene(n)
        path = folder / "photos" / f"sample-{n:02d}.jpg"
        path.write_bytes(_jpeg(img, 90))
        small = img.resize((img.width * 3 // 5, img.height * 3 // 5), Image.Resampling.LANCZOS)
        (folder / "copies" / f"sample-{n:02d}-small.jpg").write_bytes(_jpeg(small, 75))
        written.append(path)
    return written
