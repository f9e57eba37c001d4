"""Does the verification signal (``moderation.verification``) tell true copies from collisions?

    python benchmarks/verification.py PHOTOS_DIR [--grids 5] [--collision-sample N]
                                                   (e.g. ../shared/corpus/photos)

Four measurements, printed as Markdown:

1. True copies: every photo flagged (its signal from the decode the fingerprint reads,
   ``decode_for_hashing``) against every edit of ``evaluation.EDITS`` (same seeded edits as
   ``evaluate_matching``), the upload's signal built with its mirrored set as the upload path
   would. Per edit: inliers min / median, share verified (inliers >= VERIFIED_MIN_INLIERS) and
   share "cannot verify" (too few keypoints on either side).
2. Collisions: every photo cut into grids 1x1 ... 5x5 (non-overlapping tiles, JPEG q90). Each
   tile is an upload (whole fingerprint, its cuts ``UPLOAD_CUTS``, the picture inside a frame:
   ``hashing.check_fingerprints``) and a flag (``stored_variants`` of ``fingerprint_variants``,
   refused below the information gate, as flagging does). A pair of tiles from *different*
   photos collides when the site's rule would block (dHash <= 12 and pHash <= 16 under any
   stored variant, cuts against the same variant only, as ``BannedIndex.check`` compares).
   Reported: inliers max and distribution, shares verified (must be 0) and cannot-verify.
3. Near misses: pairs within the review reach (dHash <= 16 and pHash <= 18) that do not match:
   what the review queue gets today, and how many a "plausibly a copy" bar keeps.
5. Different photos under the same overlay (the same meme caption; the same app's screenshot
   chrome): the verifier confirms shared *local content*, and an identical overlay is some.
4. Cost and size: ms per ``signal_of`` (stored side; upload side with its mirrored set) on the
   corpus photos as decoded for the fingerprint, ms per ``compare``, bytes per stored signal.

Alongside, PDQ (``pdqhash``, 256 bits, of the same scaled grey picture) like with like: the
upload whole against the flag's 8 dihedral hashes, the upload's centre and caption-band cuts
against the flag's same cuts; the smallest distance. Needs opencv-python-headless and pdqhash.
A few minutes for the 72 corpus photos on 2 cores. Not part of the test run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import numpy as np  # noqa: E402
import pdqhash  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from PIL import Image  # noqa: E402

from moderation import evaluation, matching  # noqa: E402
from moderation import verification as v  # noqa: E402
from moderation.banned_index import stored_variants  # noqa: E402
from moderation.decoding import decode_for_hashing  # noqa: E402
from moderation.hashing import check_fingerprints, fingerprint_variants  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402
from moderation.variants import UPLOAD_CUTS, VARIANTS, crop_box  # noqa: E402

ANY_VARIANT = -1


# --- PDQ like with like ------------------------------------------------------------------


def _pdq_bits(grey: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.packbits(pdqhash.compute(rgb)[0].astype(np.uint8))


def pdq_side(image: Image.Image, *, flag: bool) -> dict:
    """PDQ of the picture (the flag: its 8 dihedral hashes) and of its upload cuts."""
    grey = v.scaled_grey(image)
    out = {}
    if flag:
        rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        out["whole"] = [np.packbits(h.astype(np.uint8)) for h in pdqhash.compute_dihedral(rgb)[0]]
    else:
        out["whole"] = [_pdq_bits(grey)]
    pil = Image.fromarray(grey)
    for number in UPLOAD_CUTS:
        out[number] = [_pdq_bits(np.asarray(pil.crop(crop_box(pil.size, VARIANTS[number].cut))))]
    return out


def pdq_distance(upload: dict, flag: dict) -> int:
    def bits(a, b):
        return int(np.unpackbits(np.bitwise_xor(a, b)).sum())

    best = min(bits(upload["whole"][0], h) for h in flag["whole"])
    return min([best] + [bits(upload[n][0], flag[n][0]) for n in UPLOAD_CUTS])


# --- Helpers -------------------------------------------------------------------------------


def quantiles(values: list[int], qs=(0, 0.5, 0.9, 0.99, 1)) -> str:
    if not values:
        return "-"
    arr = np.sort(np.array(values))
    return " / ".join(str(int(arr[min(len(arr) - 1, int(q * (len(arr) - 1)))])) for q in qs)


def share(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.1f}%)" if total else "-"


def verdicts(results: list[v.Verification]) -> tuple[int, int, int]:
    return (sum(r.verified for r in results), sum(r.plausible for r in results),
            sum(not r.verifiable for r in results))


# --- 1. True copies ------------------------------------------------------------------------


def true_copies(photos: list[evaluation.Photo], seed: int) -> dict:
    flags = {}
    for photo in photos:
        decoded = decode_for_hashing(io.BytesIO(photo.data))
        flags[photo.path.name] = (v.signal_of(decoded.image), pdq_side(decoded.image, flag=True))
    rows = {}
    for photo in photos:
        rng = random.Random(f"{seed}:{photo.path.name}")  # noqa: S311 - as evaluate() does
        stored, flag_pdq = flags[photo.path.name]
        for edit in evaluation.EDITS:
            try:
                decoded = decode_for_hashing(io.BytesIO(edit.make(photo.image, rng)))
            except ValidationError:
                continue
            result = v.compare(stored, v.signal_of(decoded.image, mirrored=True))
            pdq = pdq_distance(pdq_side(decoded.image, flag=False), flag_pdq)
            rows.setdefault(edit.name, []).append((result, pdq))
    return rows


def report_true_copies(rows: dict) -> None:
    print("\n## True copies (every photo against each edit)\n")
    print(f"verified: inliers >= {v.VERIFIED_MIN_INLIERS}; cannot verify: fewer than "
          f"{v.MIN_KEYPOINTS} keypoints on a side. PDQ: smallest distance like with like.\n")
    print("| edit | n | inliers min | median | verified | cannot verify | PDQ median | PDQ max |")
    print("|---|---|---|---|---|---|---|---|")
    every = []
    for name, pairs in rows.items():
        results = [r for r, _ in pairs]
        every += results
        counted = [r.inliers for r in results if r.verifiable]
        verified, _, cannot = verdicts(results)
        pdq = [p for _, p in pairs]
        print(f"| {name} | {len(results)} | {min(counted, default='-')} | "
              f"{statistics.median(counted) if counted else '-'} | "
              f"{share(verified, len(results))} | {cannot} | {statistics.median(pdq)} | "
              f"{max(pdq)} |")
    verified, _, cannot = verdicts(every)
    print(f"\nAll edits: verified {share(verified, len(every))}, cannot verify {cannot}.")
    low = sorted((r.inliers, name) for name, pairs in rows.items() for r, _ in pairs
                 if r.verifiable and not r.verified)
    print(f"Verifiable copies below the bar: {low[:20]}")


# --- 2./3. Tiles: collisions and near misses ----------------------------------------------


def tiles_of(photo: evaluation.Photo, grids: int):
    img = photo.image.convert("RGB")
    for n in range(1, grids + 1):
        for i in range(n):
            for j in range(n):
                box = (img.width * i // n, img.height * j // n,
                       img.width * (i + 1) // n, img.height * (j + 1) // n)
                out = io.BytesIO()
                img.crop(box).save(out, "JPEG", quality=90)
                yield f"{photo.path.name} {n}x{n} ({i},{j})", out.getvalue()


def tile_table(photos: list[evaluation.Photo], grids: int):
    """Per tile: photo number, upload probes, flag entries, signals, PDQ."""
    tiles = []
    for number, photo in enumerate(photos):
        for name, data in tiles_of(photo, grids):
            try:
                checked = check_fingerprints(io.BytesIO(data))
                decoded = decode_for_hashing(io.BytesIO(data))
            except ValidationError:
                continue
            variants = fingerprint_variants(io.BytesIO(data))
            flaggable = not matching.is_low_information(variants[0].information)
            probes = [(ANY_VARIANT, checked.frames[0])]
            probes += [(n, fp) for n, fp in checked.cuts.items()]
            if checked.inner is not None:
                probes.append((ANY_VARIANT, checked.inner))
            tiles.append({
                "name": name, "photo": number, "decoded": decoded, "probes": probes,
                "entries": stored_variants(variants) if flaggable else [],
            })
    return tiles


def candidate_pairs(tiles: list[dict], rule: matching.MatchRule):
    """(upload tile, flag tile) -> 'match' or 'near' over different photos' tiles."""
    rows = [(t, number, fp.dhash, fp.phash)
            for t, tile in enumerate(tiles) for number, fp in tile["entries"]]
    flag_tile = np.array([r[0] for r in rows])
    flag_variant = np.array([r[1] for r in rows])
    flag_photo = np.array([tiles[r[0]]["photo"] for r in rows])
    dh = np.array([r[2] for r in rows], dtype=np.uint64)
    ph = np.array([r[3] for r in rows], dtype=np.uint64)
    pairs: dict[tuple[int, int], str] = {}
    for u, tile in enumerate(tiles):
        other = flag_photo != tile["photo"]
        for variant, fp in tile["probes"]:
            near = other & (flag_variant == variant if variant != ANY_VARIANT else True)
            d = np.bitwise_count(dh ^ np.uint64(fp.dhash))
            p = np.bitwise_count(ph ^ np.uint64(fp.phash))
            match = near & (d <= rule.max_distance) & (p <= rule.max_confirm_distance)
            review = near & (d <= rule.review_distance) & (p <= rule.review_confirm_distance)
            for f in np.unique(flag_tile[match]):
                pairs[(u, int(f))] = "match"
            for f in np.unique(flag_tile[review & ~match]):
                pairs.setdefault((u, int(f)), "near")
    return pairs


def report_pairs(title: str, tiles: list[dict], pairs: list[tuple[int, int]], signals, pdqs):
    results = [v.compare(signals[f][0], signals[u][1]) for u, f in pairs]
    counted = [r.inliers for r in results if r.verifiable]
    verified, plausible, cannot = verdicts(results)
    print(f"\n### {title}: {len(results)} (upload tile, flag tile) pairs of different photos\n")
    print(f"- inliers min / median / p90 / p99 / max (verifiable pairs): {quantiles(counted)}")
    print(f"- inliers histogram: {sorted(Counter(counted).items())}")
    print(f"- verified (>= {v.VERIFIED_MIN_INLIERS}): {share(verified, len(results))}")
    print(f"- plausibly a copy (>= {v.PLAUSIBLE_MIN_INLIERS}): {share(plausible, len(results))}")
    print(f"- cannot verify (< {v.MIN_KEYPOINTS} keypoints on a side): "
          f"{share(cannot, len(results))}")
    pdq = [pdq_distance(pdqs[u][1], pdqs[f][0]) for u, f in pairs]
    print(f"- PDQ like with like, min / median / p90 / p99 / max: {quantiles(pdq)}")
    worst = sorted(zip(results, pairs), key=lambda x: -x[0].inliers)[:5]
    for r, (u, f) in worst:
        print(f"  - {r.inliers} inliers: {tiles[u]['name']} vs {tiles[f]['name']}")


# --- 5. Different photos under the same overlay --------------------------------------------

OVERLAYS = {
    "same caption": lambda img: evaluation.caption(img),
    "same screenshot chrome": evaluation._screenshot,
}


def report_overlays(photos: list[evaluation.Photo], partners: int) -> None:
    """Photo A under an overlay flagged; photo B != A under the same overlay uploaded. The
    verifier sees shared local content: what does an identical overlay do, and does the hash
    rule send such a pair to it at all (``evaluation.look_up`` against A's flag alone)?"""
    rule = matching.MatchRule.from_settings()
    print("\n## Different photos under the same overlay (flag A+overlay, upload B+overlay)\n")
    print("| overlay | pairs | inliers median | max | verified | hash rule blocks | reviews |"
          " blocked and verified |")
    print("|---|---|---|---|---|---|---|---|")
    for name, overlay in OVERLAYS.items():
        made = [evaluation._encode(overlay(p.image.convert("RGB")), "JPEG") for p in photos]
        flags = []
        for data in made:
            decoded = decode_for_hashing(io.BytesIO(data))
            variants = fingerprint_variants(io.BytesIO(data))
            index = evaluation.index_of(stored_variants(variants))
            flags.append((v.signal_of(decoded.image), index))
        rows = []
        for i in range(len(photos)):
            for k in range(1, partners + 1):
                j = (i + k) % len(photos)
                upload = decode_for_hashing(io.BytesIO(made[j]))
                result = v.compare(flags[i][0], v.signal_of(upload.image, mirrored=True))
                decision = evaluation.look_up(made[j], flags[i][1], rule).decision
                rows.append((result, decision))
        counted = [r.inliers for r, _ in rows]
        verified = sum(r.verified for r, _ in rows)
        blocks = sum(d == matching.BLOCK for _, d in rows)
        reviews = sum(d == matching.REVIEW for _, d in rows)
        both = sum(d == matching.BLOCK and r.verified for r, d in rows)
        print(f"| {name} | {len(rows)} | {statistics.median(counted)} | {max(counted)} | "
              f"{share(verified, len(rows))} | {blocks} | {reviews} | {both} |")


# --- 4. Cost -------------------------------------------------------------------------------


def report_cost(photos: list[evaluation.Photo]) -> None:
    stored_ms, upload_ms, compare_ms, sizes, decoded_sizes = [], [], [], [], Counter()
    signals = []
    for photo in photos:
        decoded = decode_for_hashing(io.BytesIO(photo.data))
        decoded_sizes[decoded.image.size] += 1
        start = time.perf_counter()
        stored = v.signal_of(decoded.image)
        stored_ms.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        upload = v.signal_of(decoded.image, mirrored=True)
        upload_ms.append(1000 * (time.perf_counter() - start))
        sizes.append((len(stored), len(upload)))
        signals.append((stored, upload))
    for i, (stored, _) in enumerate(signals):  # different photos
        _, upload = signals[(i + 1) % len(signals)]
        start = time.perf_counter()
        v.compare(stored, upload)
        compare_ms.append(1000 * (time.perf_counter() - start))
    same = []
    for stored, upload in signals:  # the same photo
        start = time.perf_counter()
        v.compare(stored, upload)
        same.append(1000 * (time.perf_counter() - start))
    print("\n## Cost and size\n")
    print(f"Decoded sizes (as the fingerprint reads them): {decoded_sizes.most_common(4)}")
    print(f"- signal_of, stored side (one set): median {statistics.median(stored_ms):.1f} ms, "
          f"max {max(stored_ms):.1f} ms")
    print(f"- signal_of, upload side (with the mirrored set): median "
          f"{statistics.median(upload_ms):.1f} ms")
    print(f"- compare, different photos (both sets tried): median "
          f"{statistics.median(compare_ms):.2f} ms, max {max(compare_ms):.2f} ms")
    print(f"- compare, same photo: median {statistics.median(same):.2f} ms")
    print(f"- bytes stored per signal: median {statistics.median(s for s, _ in sizes):.0f}, "
          f"max {max(s for s, _ in sizes)} (bound {v.MAX_STORED}); upload side (transient) "
          f"median {statistics.median(u for _, u in sizes):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos")
    parser.add_argument("--grids", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partners", type=int, default=3,
                        help="overlay pairs: each photo against this many others")
    args = parser.parse_args()
    skipped: list[str] = []
    photos = evaluation.load_photos(iter_image_paths([args.photos]), skipped)
    rule = matching.MatchRule.from_settings()
    print(f"# Verification: {len(photos)} photos ({len(skipped)} skipped), rule {rule}")
    print(f"ORB {v.MAX_KEYPOINTS} keypoints at <= {v.MAX_SIDE} px, ratio {v.RATIO}, RANSAC "
          f"{v.RANSAC_THRESHOLD} px; verified >= {v.VERIFIED_MIN_INLIERS}, plausible >= "
          f"{v.PLAUSIBLE_MIN_INLIERS}, keypoints >= {v.MIN_KEYPOINTS}")
    report_cost(photos)
    start = time.perf_counter()
    report_true_copies(true_copies(photos, args.seed))
    print(f"\n(true copies: {time.perf_counter() - start:.0f} s)")
    start = time.perf_counter()
    tiles = tile_table(photos, args.grids)
    pairs = candidate_pairs(tiles, rule)
    involved = sorted({t for pair in pairs for t in pair})
    signals = {t: (v.signal_of(tiles[t]["decoded"].image),
                   v.signal_of(tiles[t]["decoded"].image, mirrored=True)) for t in involved}
    pdqs = {t: (pdq_side(tiles[t]["decoded"].image, flag=True),
                pdq_side(tiles[t]["decoded"].image, flag=False)) for t in involved}
    keypoints = [v.unpack(signals[t][0]).keypoints for t in involved]
    print(f"\n## Tiles: {len(tiles)} tiles (grids 1..{args.grids}, JPEG q90), "
          f"{sum(bool(t['entries']) for t in tiles)} flaggable")
    print(f"Keypoints of tiles in a candidate pair, min / median / p90 / p99 / max: "
          f"{quantiles(keypoints)}")
    report_pairs("Collisions (the rule blocks)", tiles,
                 [p for p, kind in pairs.items() if kind == "match"], signals, pdqs)
    report_pairs("Near misses (review reach, not a match)", tiles,
                 [p for p, kind in pairs.items() if kind == "near"], signals, pdqs)
    print(f"\n(tiles: {time.perf_counter() - start:.0f} s)")
    report_overlays(photos, args.partners)


if __name__ == "__main__":
    main()
