"""Evidence for the match rule: the edited copies it catches and the innocent photos it blocks.

``manage.py evaluate_matching PHOTOS_DIR`` is the front end; this module holds the edit suite,
the run and the scoring, and touches no database.

How a run works
---------------
The photos are split, seeded, into a banned half and an innocent half. Every banned photo is
flagged the way ``flagging.flag_image`` does it -- ``fingerprint_variants`` of the file, the
low-information gate (``flagging.check_information``), the variants a flag stores
(``banned_index.stored_variants``), the index entries a process loads for them
(``banned_index.variant_entries``, through the same signed 64-bit values the rows hold) -- into
an in-memory ``banned_index.BannedIndex``: the very object a web worker's ``BannedSet`` keeps. It is
built in memory, not in a database transaction that is rolled back, because the flag service
holds the banned-set writers' lock until its transaction ends (a run of minutes would stall
every moderator on a live site), writes originals to storage and enqueues sweeps; only the
database round trip is left out, and the tests cover that.

Every edited copy is then encoded to the file a person would upload and goes through the
upload path: ``screening.upload_fingerprints`` of the bytes (the re-encoding the site stores, as
the profile form makes it, and any further frames) screened by ``screening.screen`` against the
index with the site's ``MatchRule``: the decision at the current settings is the real one (the
allowlist aside: a run has no moderators). For the sweep across distances each lookup
also keeps every candidate variant within ``SWEEP_MAX_DISTANCE`` dHash bits with its pHash
distance, so any (dHash, pHash) rule is scored from the same lookups.

A banned photo's copy counts as caught when the decision is ``block``; an innocent file (the
original and each of its edits) is a false positive when it is blocked. ``pdq_list``: the banned
half held as a PDQ-only hash list instead, as a partner imports it (``pdq_evaluation``).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from moderation import matching, pdq_evaluation
from moderation.banned_index import BannedIndex, entry_key, stored_variants, variant_entries
from moderation.decoding import open_image
from moderation.flagging import check_information
from moderation.hashing import CheckFingerprints, Fingerprint, fingerprint_variants
from moderation.screening import (
    ImageSignals,
    Verifier,
    lookup_in,
    screen,
    signal_of_file,
    upload_fingerprints,
)
from moderation.verification import keypoint_count

# The sweep reaches this far in dHash bits; pHash distances are swept over PHASH_SWEEP.
SWEEP_MAX_DISTANCE = 16
PHASH_SWEEP: tuple[int | None, ...] = (None, 10, 14, 16, 18, 20, 22, 24)  # None: no pHash check

# Targets: recall at least this on every edit of each group (None: no target, reported only).
TARGETS = {"routine": 0.95, "crop": 0.80, "hard": None}


# --- the edit suite -----------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    out = io.BytesIO()
    if fmt in ("JPEG", "WEBP") and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    params = {"quality": 90, **params} if fmt in ("JPEG", "WEBP") else params
    img.save(out, format=fmt, **params)
    return out.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(10, size))


def _resize(img: Image.Image, fx: float, fy: float | None = None) -> Image.Image:
    fy = fx if fy is None else fy
    size = (max(1, round(img.width * fx)), max(1, round(img.height * fy)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _crop(img: Image.Image, fraction: float) -> Image.Image:
    """Keep the centre: ``fraction`` of the width and of the height are cut, half each side."""
    dx, dy = round(img.width * fraction / 2), round(img.height * fraction / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


SIDES = ("left", "right", "top", "bottom")


def _crop_side(img: Image.Image, fraction: float, side: str) -> Image.Image:
    """Cut ``fraction`` of the width (left, right) or of the height (top, bottom) off one side."""
    dx, dy = round(img.width * fraction), round(img.height * fraction)
    box = {
        "left": (dx, 0, img.width, img.height),
        "right": (0, 0, img.width - dx, img.height),
        "top": (0, dy, img.width, img.height),
        "bottom": (0, 0, img.width, img.height - dy),
    }[side]
    return img.crop(box)


def _one_sided_crop(fraction: float) -> Callable[[Image.Image, random.Random], bytes]:
    """A one-sided crop of a side drawn from the photo's seeded ``rng``: a defence tuned to one
    side (people cut whichever edge holds a logo or a caption) must not look good here."""

    def make(img: Image.Image, rng: random.Random) -> bytes:
        return _encode(_crop_side(img, fraction, rng.choice(SIDES)), "JPEG")

    return make


def _noise(img: Image.Image, rng: random.Random) -> Image.Image:
    pixels = np.asarray(img.convert("RGB"), dtype=np.int16)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _watermark(img: Image.Image) -> Image.Image:
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(12, out.height // 16)
    x, y = out.width - size * 8, out.height - size * 2
    draw.rounded_rectangle([x - size // 2, y - size // 3, out.width - size // 3, y + size * 4 // 3],
                           radius=size // 3, fill=(255, 255, 255, 90))
    draw.text((x, y), "© stockpix", font=_font(size), fill=(0, 0, 0, 150))
    return Image.alpha_composite(out, layer).convert("RGB")


CAPTION_TOP = ("WHEN YOU SEE IT", "AND THEN")
CAPTION_BOTTOM = ("NOBODY EXPECTED THIS", "OR DID THEY")


def caption(img: Image.Image, *, height: int = 9, where: str = "both", lines: int = 1):
    """Meme text: big white capitals with a black outline, 1/``height`` of the picture's height,
    ``lines`` lines (1 or 2) at the top, the bottom or ``both``. The edit suite uses the
    defaults; ``benchmarks/caption_coverage.py`` sweeps the rest."""
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    size = max(12, out.height // height)
    font = _font(size)
    stroke = max(1, size // 12)
    step = size * 11 // 10
    placed = []
    if where in ("top", "both"):
        placed += [(CAPTION_TOP[i], size // 3 + i * step) for i in range(lines)]
    if where in ("bottom", "both"):
        placed += [
            (CAPTION_BOTTOM[i], out.height - size * 4 // 3 - (lines - 1 - i) * step)
            for i in range(lines)
        ]
    for text, y in placed:
        width = draw.textlength(text, font=font)
        draw.text(((out.width - width) / 2, y), text, font=font, fill="white",
                  stroke_width=stroke, stroke_fill="black")
    return out


def _pad(img: Image.Image) -> Image.Image:
    border = (round(img.width * 0.1), round(img.height * 0.1))
    return ImageOps.expand(img.convert("RGB"), border=border, fill="white")


def _exif_rotated(img: Image.Image) -> bytes:
    """A phone file: pixels stored sideways, EXIF orientation 6 says "turn 90° clockwise"."""
    stored = img.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", exif=exif.tobytes())


def _reshare(img: Image.Image) -> bytes:
    """Saved from one app and posted to another: 5% crop, downscaled, brighter, JPEG q70."""
    out = ImageEnhance.Brightness(_resize(_crop(img, 0.05), 0.6)).enhance(1.1)
    return _encode(out, "JPEG", quality=70)


def _screenshot(img: Image.Image) -> Image.Image:
    """A phone screenshot of the picture: status bar, the image at 90% width, text below."""
    width = img.width
    canvas = Image.new("RGB", (width, round(width * 16 / 9)), "white")
    draw = ImageDraw.Draw(canvas)
    bar = max(12, width // 14)
    draw.rectangle([0, 0, width, bar], fill=(20, 20, 20))
    draw.text((bar // 2, bar // 5), "12:34", font=_font(bar * 3 // 5), fill="white")
    shown = _resize(img.convert("RGB"), 0.9)
    top = bar * 2
    canvas.paste(shown, ((width - shown.width) // 2, top))
    font = _font(max(10, width // 24))
    for i, line in enumerate(("liked by someone and 1,024 others", "look at this #nofilter")):
        draw.text((width // 20, top + shown.height + bar * (i + 1) // 2 + bar * i // 2), line,
                  font=font, fill=(30, 30, 30))
    return canvas


@dataclass(frozen=True)
class Edit:
    """One kind of edited copy: ``make(upright image, rng)`` returns the uploaded file's bytes.

    ``group``: ``routine`` (target recall 0.95), ``crop`` (0.80) or ``hard`` (no target:
    nothing global catches it).
    """

    name: str
    make: Callable[[Image.Image, random.Random], bytes]
    group: str = "routine"


def _jpeg(transform: Callable[[Image.Image], Image.Image], **params) -> Callable:
    return lambda img, rng: _encode(transform(img), "JPEG", **params)


EDITS: tuple[Edit, ...] = (
    Edit("jpeg q30", lambda img, rng: _encode(img, "JPEG", quality=30)),
    Edit("jpeg q60", lambda img, rng: _encode(img, "JPEG", quality=60)),
    Edit("png", lambda img, rng: _encode(img, "PNG")),
    Edit("webp", lambda img, rng: _encode(img, "WEBP", quality=80)),
    Edit("resize 50%", _jpeg(lambda img: _resize(img, 0.5))),
    Edit("resize 150%", _jpeg(lambda img: _resize(img, 1.5))),
    Edit("aspect +10%", _jpeg(lambda img: _resize(img, 1.1, 1.0))),
    Edit("grayscale", _jpeg(lambda img: img.convert("L"))),
    Edit("brightness +20%", _jpeg(lambda img: ImageEnhance.Brightness(img).enhance(1.2))),
    Edit("brightness -20%", _jpeg(lambda img: ImageEnhance.Brightness(img).enhance(0.8))),
    Edit("contrast +30%", _jpeg(lambda img: ImageEnhance.Contrast(img).enhance(1.3))),
    Edit("contrast -30%", _jpeg(lambda img: ImageEnhance.Contrast(img).enhance(0.7))),
    Edit("blur", _jpeg(lambda img: img.filter(
        ImageFilter.GaussianBlur(max(1.0, min(img.size) / 400))))),
    Edit("noise", lambda img, rng: _encode(_noise(img, rng), "JPEG")),
    Edit("watermark", _jpeg(_watermark)),
    Edit("caption text", _jpeg(caption)),
    Edit("crop 5%", _jpeg(lambda img: _crop(img, 0.05))),
    Edit("crop 10%", _jpeg(lambda img: _crop(img, 0.10)), "crop"),
    Edit("crop 20%", _jpeg(lambda img: _crop(img, 0.20)), "hard"),
    Edit("one-sided crop 5%", _one_sided_crop(0.05), "crop"),
    Edit("one-sided crop 10%", _one_sided_crop(0.10), "crop"),
    Edit("padding 10%", _jpeg(_pad), "hard"),
    Edit("rotate 3°", _jpeg(lambda img: img.convert("RGB").rotate(
        3, resample=Image.Resampling.BICUBIC))),
    Edit("mirror", _jpeg(lambda img: img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
    Edit("rotate 90°", _jpeg(lambda img: img.transpose(Image.Transpose.ROTATE_270))),
    Edit("rotate 180°", _jpeg(lambda img: img.transpose(Image.Transpose.ROTATE_180))),
    Edit("rotate 270°", _jpeg(lambda img: img.transpose(Image.Transpose.ROTATE_90))),
    Edit("EXIF-rotated phone file", lambda img, rng: _exif_rotated(img)),
    Edit("re-share combo", lambda img, rng: _reshare(img)),
    Edit("screenshot", _jpeg(_screenshot), "hard"),
)

ORIGINAL = "original file"


# --- running --------------------------------------------------------------------------------


@dataclass
class Lookup:
    """One uploaded file: the decision at the site's rule, and every candidate for the sweep.

    ``candidates`` rows are ``(dHash distance, pHash distance or 65, variant, whole)`` of every
    informative banned variant within ``SWEEP_MAX_DISTANCE`` (low-information flags never
    block, so they are left out of the sweep); ``whole`` is 1 for a candidate of the whole
    upload, 0 for one found by a cut or by the picture inside a frame.
    """

    decision: str
    candidates: np.ndarray  # int16, shape (n, 4)
    pdq: pdq_evaluation.Outcome | None = None  # a PDQ-list run: each way to hold the banned half


@dataclass
class Photo:
    path: Path
    image: Image.Image
    data: bytes


@dataclass
class Run:
    """Everything a report needs; ``lookups[(side, edit)]`` lists one ``Lookup`` per photo."""

    seed: int
    rule: matching.MatchRule
    banned: list[str] = field(default_factory=list)
    innocent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable photos: "name: why"
    refused: list[str] = field(default_factory=list)  # banned photos the gate refused
    errors: list[str] = field(default_factory=list)  # edited copies the upload path refused
    lookups: dict[tuple[str, str], list[Lookup]] = field(default_factory=dict)
    entries: int = 0
    index_bytes: int = 0
    signals: dict[int, bytes] = field(default_factory=dict)  # flag id -> verification signal
    pdqs: list[tuple[int, int, str]] = field(default_factory=list)  # (flag id, variant, PDQ)
    pdq_list: str | None = None  # "dihedral" or "upright": a PDQ-list run (``pdq_evaluation``)


def load_photos(paths: Iterable[Path], skipped: list[str]) -> list[Photo]:
    """Every readable image, upright (EXIF applied), with its file's bytes."""
    photos = []
    for path in paths:
        try:
            data = path.read_bytes()
            image = open_image(io.BytesIO(data))
        except ValidationError as e:
            # The form's wording ("Upload a ... image.") is for people uploading; say what the
            # file is instead.
            if e.code == "unsupported_format":
                why = "not a JPEG, PNG, GIF or WebP image"
            else:
                why = " ".join(e.messages)
            skipped.append(f"{path.name}: {why}")
            continue
        except OSError as e:
            skipped.append(f"{path.name}: {e.strerror or e}")
            continue
        photos.append(Photo(path, image.convert("RGB") if image.mode != "L" else image, data))
    return photos


def split(photos: list[Photo], *, seed: int, banned_fraction: float) -> tuple[list, list]:
    """Seeded split into (banned, innocent); every photo lands on exactly one side."""
    order = sorted(photos, key=lambda p: p.path.name)
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    cut = min(max(1, round(len(order) * banned_fraction)), len(order) - 1)
    return order[:cut], order[cut:]


def flag_alone(photo: Photo) -> list[tuple[int, Fingerprint]] | None:
    """The ``(variant number, fingerprint)`` entries a flag of ``photo`` stores
    (``stored_variants``), or None when the low-information gate would refuse it. For
    the coverage benchmarks, which flag each photo on its own (``index_of``)."""
    variants = fingerprint_variants(io.BytesIO(photo.data))
    if matching.is_low_information(variants[0].information):
        return None
    return stored_variants(variants)


def index_of(
    entries: list[tuple[int, Fingerprint]], *, leave_out: Iterable[int] = ()
) -> BannedIndex:
    """One flag's entries (``flag_alone``) in an index of their own, without the variant
    numbers in ``leave_out`` (to score what a variant adds)."""
    skip = set(leave_out)
    index = BannedIndex()
    for number, fp in entries:
        if number not in skip:
            index.add(entry_key(1, number), fp.dhash, fp.phash, False)
    return index


def build_banned_index(banned: list[Photo], run: Run) -> BannedIndex:
    """Flag every banned photo as ``flagging.flag_image`` does, into an in-memory index."""
    rows = []
    for flag_id, photo in enumerate(banned, start=1):
        variants = fingerprint_variants(io.BytesIO(photo.data))
        signal = signal_of_file(io.BytesIO(photo.data))
        try:
            check_information(variants[0], allow_low=False, actor=None, signal=signal)
        except ValidationError:
            run.refused.append(
                f"{photo.path.name} (information {variants[0].information}, "
                f"{keypoint_count(signal)} keypoints)"
            )
            continue
        run.banned.append(photo.path.name)
        run.signals[flag_id] = signal
        for number, fp in stored_variants(variants):
            rows.append(
                (flag_id, number, fp.signed, fp.phash_signed, variants[0].information)
            )
            if fp.pdq is not None:
                run.pdqs.append((flag_id, number, fp.pdq.hex))
    index = BannedIndex()
    index.build(variant_entries(rows))
    run.entries = len(index)
    run.index_bytes = index.nbytes()
    return index


def verifier_for(data: bytes, signals: dict[int, bytes] | None) -> Verifier | None:
    """The upload path's verification of ``data`` against in-memory flags' ``signals`` (None:
    no verification, the rule alone)."""
    if signals is None:
        return None
    return Verifier(
        ImageSignals.of_bytes(data),
        flags=lambda ids: {i: signals[i] for i in ids if i in signals},
    )


def look_up(
    data: bytes,
    index: BannedIndex,
    rule: matching.MatchRule,
    signals: dict[int, bytes] | None = None,
    pdq_lists: dict | None = None,
) -> Lookup:
    """The upload path on one file: fingerprinted as the upload form does (the re-encoding
    the site stores, and any further animation frames), checked against the index, its
    candidates verified against the flags' ``signals`` (None: by the rule alone). With
    ``pdq_lists`` (``pdq_evaluation.lists_of``), the decision is the first list's."""
    checked = upload_fingerprints(io.BytesIO(data))
    verifier = verifier_for(data, signals)
    decision = screen(
        checked, lookup=lookup_in(index, rule), allowlist=False, verifier=verifier
    ).decision
    pdq = pdq_evaluation.outcome_of(checked, rule, decision, pdq_lists) if pdq_lists else None
    decision = decision if pdq is None else pdq.decision
    rows = [
        (m.distance, 65 if m.confirm_distance is None else m.confirm_distance, m.variant, whole)
        for m, whole in sweep_candidates(checked, index, max(SWEEP_MAX_DISTANCE, rule.radius))
        if not m.low_information
    ]
    return Lookup(decision, np.array(rows, dtype=np.int16).reshape(-1, 4), pdq)


def sweep_candidates(
    checked: CheckFingerprints, index: BannedIndex, reach: int
) -> list[tuple[matching.Match, int]]:
    """Every candidate within ``reach`` dHash bits of an upload's fingerprints, compared as the
    upload path compares them, with ``whole`` (1: found by a frame of the whole upload, 0: by a
    cut or by the picture inside a frame). Whatever their pHash: a sweep scores any rule."""
    found = [(m, 1) for fp in checked.frames for m in index.candidates(fp, reach)]
    # The upload's cuts against the same variant of the flags, as the upload path compares them.
    found += [
        (m, 0)
        for number, cut in checked.cuts.items()
        for m in index.candidates(cut, reach, variant=number)
    ]
    # The picture inside the upload's frame, compared as the whole upload is.
    if checked.inner is not None:
        found += [(m, 0) for m in index.candidates(checked.inner, reach)]
    return found


def evaluate(
    photos: list[Photo],
    *,
    seed: int = 0,
    banned_fraction: float = 0.5,
    rule: matching.MatchRule | None = None,
    edits: tuple[Edit, ...] = EDITS,
    progress: Callable[[int, int], None] | None = None,
    pdq_list: str | None = None,
) -> Run:
    """Split, flag the banned side, and look every original and edited copy up (``pdq_list``:
    "dihedral" or "upright", decided against the banned side as a PDQ-only list of that kind).

    ``progress(done, total)`` is called after each photo (with every copy of it) is looked up.
    """
    rule = matching.MatchRule.from_settings() if rule is None else rule
    run = Run(seed=seed, rule=rule, pdq_list=pdq_list)
    banned, innocent = split(photos, seed=seed, banned_fraction=banned_fraction)
    index = build_banned_index(banned, run)
    pdq_lists = None if pdq_list is None else pdq_evaluation.lists_of(run.pdqs, first=pdq_list)
    banned = [p for p in banned if p.path.name in set(run.banned)]
    run.innocent = [p.path.name for p in innocent]
    total, done = len(banned) + len(innocent), 0
    for side, group in (("banned", banned), ("innocent", innocent)):
        for photo in group:
            rng = random.Random(f"{seed}:{photo.path.name}")  # noqa: S311 - reproducible edits
            for name, edit in [(ORIGINAL, None)] + [(e.name, e) for e in edits]:
                try:
                    data = photo.data if edit is None else edit.make(photo.image, rng)
                    lookup = look_up(data, index, rule, run.signals, pdq_lists)
                except ValidationError as e:
                    run.errors.append(f"{photo.path.name} / {name}: {' '.join(e.messages)}")
                    continue
                run.lookups.setdefault((side, name), []).append(lookup)
            done += 1
            if progress:
                progress(done, total)
    return run


# --- scoring --------------------------------------------------------------------------------


def caught(lookup: Lookup, max_distance: int, max_confirm: int | None, *, upright_only=False):
    """Would a plain (dHash <= d [and pHash <= c]) rule block this file? ``upright_only``: the
    old rule, the whole upload against the flags' upright variants only."""
    rows = lookup.candidates
    if upright_only:
        rows = rows[(rows[:, 2] == 0) & (rows[:, 3] == 1)]
    hit = rows[:, 0] <= max_distance
    if max_confirm is not None:
        hit &= rows[:, 1] <= max_confirm
    return bool(hit.any())


def rate(lookups: list[Lookup], *args, **kwargs) -> float:
    return sum(caught(lu, *args, **kwargs) for lu in lookups) / len(lookups) if lookups else 0.0


def decided_rate(lookups: list[Lookup]) -> float:
    """Share of files blocked by the real decision at the site's settings."""
    blocked = sum(lu.decision == matching.BLOCK for lu in lookups)
    return blocked / len(lookups) if lookups else 0.0


def banned_lookups(run: Run) -> list[Lookup]:
    """Every banned photo's copies (and originals) except the edits nothing global catches."""
    return [
        lu
        for (side, name), lookups in run.lookups.items()
        if side == "banned" and group_of(name) != "hard"
        for lu in lookups
    ]


def edit_names(run: Run) -> list[str]:
    return [ORIGINAL] + [e.name for e in EDITS if ("banned", e.name) in run.lookups]


def innocent_lookups(run: Run) -> list[Lookup]:
    return [lu for (side, _), lus in run.lookups.items() if side == "innocent" for lu in lus]


def group_of(name: str) -> str:
    return next((e.group for e in EDITS if e.name == name), "routine")


def missed_targets(run: Run) -> list[str]:
    """Which recall targets (``TARGETS``) the current settings miss on this run (empty: all met)."""
    missed = []
    for name in edit_names(run):
        target = TARGETS[group_of(name)]
        got = decided_rate(run.lookups.get(("banned", name), []))
        if target is not None and got < target:
            missed.append(f"{name}: recall {got:.2f} < {target:.2f}")
    fp = sum(lu.decision == matching.BLOCK for lu in innocent_lookups(run))
    if fp:
        missed.append(f"{fp} innocent file(s) blocked")
    return missed


def summary(run: Run) -> dict:
    """The numbers behind the report, as plain JSON-able values."""
    innocent = innocent_lookups(run)
    missed = [lu for lu in banned_lookups(run) if lu.decision != matching.BLOCK]
    sweep = {}
    for c in PHASH_SWEEP:
        key = "dhash only" if c is None else f"phash<={c}"
        sweep[key] = {
            str(d): {
                "recall": {
                    name: rate(run.lookups.get(("banned", name), []), d, c)
                    for name in edit_names(run)
                },
                "innocent_blocked": sum(caught(lu, d, c) for lu in innocent),
            }
            for d in range(SWEEP_MAX_DISTANCE + 1)
        }
    return {
        "seed": run.seed,
        "rule": {
            "max_distance": run.rule.max_distance,
            "max_confirm_distance": run.rule.max_confirm_distance,
            "max_unconfirmed_distance": run.rule.max_unconfirmed_distance,
        },
        "banned": run.banned,
        "innocent": run.innocent,
        "refused_low_information": run.refused,
        "skipped": run.skipped,
        "errors": run.errors,
        "index_entries": run.entries,
        "index_bytes": run.index_bytes,
        "current": {
            name: {
                "recall": decided_rate(run.lookups.get(("banned", name), [])),
                "banned_files": len(run.lookups.get(("banned", name), [])),
                "innocent_blocked": sum(
                    lu.decision == matching.BLOCK for lu in run.lookups.get(("innocent", name), [])
                ),
                "innocent_files": len(run.lookups.get(("innocent", name), [])),
            }
            for name in edit_names(run)
        },
        "innocent_files": len(innocent),
        "innocent_blocked": sum(lu.decision == matching.BLOCK for lu in innocent),
        # The review queue's load and use at the site's rule: innocent files it would get, and
        # banned copies that were not blocked but reach a moderator through it.
        "innocent_queued": sum(lu.decision == matching.REVIEW for lu in innocent),
        "banned_missed": len(missed),
        "banned_missed_queued": sum(lu.decision == matching.REVIEW for lu in missed),
        "upright_only_dhash_blocked": {
            str(d): sum(caught(lu, d, None, upright_only=True) for lu in innocent)
            for d in range(SWEEP_MAX_DISTANCE + 1)
        },
        "sweep": sweep,
        "missed_targets": missed_targets(run),
        "signals": pdq_evaluation.comparison(run),
    }

