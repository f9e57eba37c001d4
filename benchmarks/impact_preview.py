"""Impact preview time ("Flag selected photos" confirmation) at 10k and 100k profiles.

    python benchmarks/impact_preview.py [--sizes 10000 100000] [--repeat 5]
        [--database-url sqlite:////tmp/impact_preview.sqlite3]

Fills a throwaway database (SQLite in a temporary folder by default; a PostgreSQL URL works,
its database must exist and is migrated) with N profiles whose photo hashes are random, plus
1% near copies of the selected photo (so the preview has something to find), then times
``sweeping.preview_flag_impact`` for one selected photo: fingerprinting the selected file (13
variants; printed on its own), loading the hash columns, comparing. Prints the median and
max of ``--repeat`` runs, the count found, and for comparison the per-row loop it replaced
(one index lookup per stored photo, kept here as ``preview_by_loop``), checking both find the
same photos.
Not part of the test run; the numbers in docs/performance.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--skip-loop", action="store_true", help="do not time the old loop")
    return parser.parse_args()


def setup_django(url: str, folder: Path) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_MEDIA_ROOT"] = str(folder / "media")
    os.environ["MODERATION_QUARANTINE_ROOT"] = str(folder / "quarantine")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def flip(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def fill(n: int, selected_fp, rng: random.Random) -> None:
    """Exactly ``n`` other profiles: random hashes, 1% within 0-10 bits of the selected photo;
    each with the probes a stored photo keeps (its two cuts; a framed picture for 1 in 50)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from moderation.hashing import to_signed
    from moderation.probes import pack_probes
    from moderation.variants import UPLOAD_CUTS
    from profiles.models import Profile

    User = get_user_model()
    have = Profile.objects.exclude(user__username="selected").count()
    with transaction.atomic():
        users = User.objects.bulk_create(
            User(username=f"bench{have + i}", password="!") for i in range(n - have)
        )
        profiles = []
        for i, user in enumerate(users):
            if (have + i) % 100 == 0:
                dhash = flip(selected_fp.dhash, rng.randrange(0, 11), rng)
                phash = flip(selected_fp.phash, rng.randrange(0, 20), rng)
            else:
                dhash, phash = rng.getrandbits(64), rng.getrandbits(64)
            probes = [
                [number, to_signed(rng.getrandbits(64)), to_signed(rng.getrandbits(64))]
                for number in UPLOAD_CUTS
            ]
            if (have + i) % 50 == 1:
                inner = [to_signed(rng.getrandbits(64)), to_signed(rng.getrandbits(64))]
                probes.append([None, *inner])
            profiles.append(
                Profile(
                    user=user,
                    photo=f"photos/bench{have + i}.jpg",
                    photo_dhash=to_signed(dhash),
                    photo_phash=to_signed(phash),
                    photo_probes=pack_probes(probes),
                    photo_pipeline_version=5,
                )
            )
        Profile.objects.bulk_create(profiles, batch_size=5000)


def preview_by_loop(instances):
    """The preview as it was before: one index lookup per stored photo, in Python."""
    from moderation import banned_index, matching, registry
    from moderation.hashing import Fingerprint, fingerprint_variants, probes_from_bytes

    index = banned_index.BannedIndex()
    selected = set()
    for position, instance in enumerate(instances):
        target = registry.target_for(instance)
        selected.add((target.key, instance.pk))
        with getattr(instance, target.file_field).open("rb") as fh:
            variants = fingerprint_variants(fh)
        low = matching.is_low_information(variants[0].information)
        for number, fp in banned_index.stored_variants(variants):
            index.add(banned_index.entry_key(position, number), fp.dhash, fp.phash, low)
    rule = matching.MatchRule.from_settings()
    hits = set()
    for target in registry.targets():
        rows = target.model._default_manager.exclude(**{f"{target.hash_field}__isnull": True})
        columns = ("pk", target.hash_field, target.confirm_field, target.probes_field)
        for pk, signed, phash, probes in rows.values_list(*columns).iterator(chunk_size=5000):
            if (target.key, pk) in selected:
                continue
            cuts, inner = probes_from_bytes(probes)
            fp = Fingerprint.from_signed(signed, phash=phash)
            if index.check(fp, rule, cuts=cuts, inner=inner).blocked:
                hits.add(pk)
    return hits


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="impact-preview-"))
    setup_django(args.database_url or f"sqlite:///{folder / 'bench.sqlite3'}", folder)

    from django.contrib.auth import get_user_model

    from moderation import sweeping
    from profiles.models import Profile
    from profiles.photos import profile_set_photo
    from profiles.services import profile_for
    from tests import images

    user, _ = get_user_model().objects.get_or_create(username="selected")
    selected = profile_set_photo(
        profile=profile_for(user=user), upload=images.upload(images.photo(4242))
    )
    selected = Profile.objects.get(pk=selected.pk)
    from moderation import registry

    selected_fp = registry.target_for(selected).fingerprint(selected)
    rng = random.Random(1)
    print(f"database: {os.environ['DATABASE_URL']}")

    def fingerprint_selected():
        from moderation.hashing import fingerprint_variants

        with selected.photo.open("rb") as fh:
            return fingerprint_variants(fh)

    from moderation.variants import VARIANTS

    fp_times, _ = timed(fingerprint_selected, args.repeat)
    print(
        f"of each preview, fingerprinting the selected photo (all {len(VARIANTS)} variants): "
        f"{statistics.median(fp_times) * 1000:.0f} ms"
    )
    print(f"{'profiles':>9} | {'preview median':>14} | {'max':>8} | {'found':>5} | "
          f"{'old loop':>9} | speed-up")
    for n in sorted(args.sizes):
        fill(n, selected_fp, rng)
        times, preview = timed(
            lambda: sweeping.preview_flag_impact(instances=[selected]), args.repeat
        )
        median = statistics.median(times)
        line = (
            f"{n:>9,} | {median * 1000:>11.0f} ms | {max(times) * 1000:>5.0f} ms | "
            f"{preview.count:>5}"
        )
        if not args.skip_loop:
            loop_times, loop_hits = timed(lambda: preview_by_loop([selected]), 1)
            assert len(loop_hits) == preview.count, (len(loop_hits), preview.count)
            line += f" | {loop_times[0] * 1000:>6.0f} ms | {loop_times[0] / median:.0f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
