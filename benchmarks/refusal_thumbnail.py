"""What keeping a refusal's thumbnail costs the upload path, in milliseconds.

    python benchmarks/refusal_thumbnail.py [--repeat 30]

A refused upload keeps a small JPEG of the refused picture in its row
(``moderation.thumbnails.thumbnail_jpeg``), made from the picture the re-encoding has already
decoded; an accepted upload makes none. This times, on drawn ~2 MP and 2048 px photos (as
JPEG uploads), the profile form's whole preparation (``prepare_photo``: decode, re-encode,
screen) of a refused upload and the thumbnail alone, and reports its size. Not part of the
test run; numbers depend on the machine (medians of ``--repeat`` runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["DATABASE_URL"] = "sqlite:///:memory:"
# The banned originals and snapshots go to a scratch folder, not the site's own.
_scratch = tempfile.mkdtemp(prefix="refusal-thumbnail-")
os.environ["DJANGO_MEDIA_ROOT"] = os.path.join(_scratch, "media")
os.environ["MODERATION_QUARANTINE_ROOT"] = os.path.join(_scratch, "quarantine")
os.environ["MODERATION_SNAPSHOT_DIR"] = os.path.join(_scratch, "banned-set")


def median_ms(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import django

    django.setup()
    logging.disable(logging.INFO)  # one "refused upload" line per run otherwise
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from moderation.thumbnails import thumbnail_jpeg
    from profiles.photos import prepare_photo, reencoded_photo
    from tests import images
    from tests.helpers import ban

    call_command("migrate", verbosity=0)
    for size in [(1728, 1152), (2048, 1536)]:
        scene = images.photo(7, size)
        ban(scene)
        data = images.encode(images.textured(scene), "JPEG", quality=88)
        picture = reencoded_photo(SimpleUploadedFile("p.jpg", data)).picture

        def prepare(data=data):
            screened = prepare_photo(SimpleUploadedFile("p.jpg", data))
            assert screened.screening.blocked and screened.thumbnail

        whole = median_ms(prepare, args.repeat)
        thumb = median_ms(lambda picture=picture: thumbnail_jpeg(picture), args.repeat)
        print(
            f"{size[0]}x{size[1]}: prepare_photo of a refused upload {whole:.1f} ms, of which "
            f"the thumbnail {thumb:.2f} ms ({thumb / whole:.1%}); "
            f"thumbnail {len(thumbnail_jpeg(picture)) / 1024:.1f} KB"
        )


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(_scratch, ignore_errors=True)
