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
original and each of its edits) is a false positive when it is blocked.

Against a PDQ-only list (``evaluate(pdq_list=...)``, ``--pdq-list``)
---------------------------------------------------------------------
The banned half arrives as a partner's list would carry it: the PDQs its flags store (the same
photos, past the same gate; ``"dihedral"``: the 8 flips and quarter turns, as
``export_hashes --banned-set --every-orientation`` writes them; ``"upright"``: the upright one,
as ``export_hashes --banned-set`` does), written as lines of an exchange file and read back
(``hash_formats``), held as entries without a quality (a list carries none) in the index a
process keeps (``pdq_index.PdqIndex``) and matched under the upload rule
(``signals.pdq_rule``: the list's PDQ distance, 31; an upload whose PDQ quality is below 50 is
only queued). The decision is the upload's screening with no dHash flag and that list: what a
site that only imported the list decides. The same lookups also give the decision of the
other PDQ list and of the banned half flagged as dHash flags (``Lookup.decisions``), so the
report says which edits each signal catches.
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

from moderation import hash_formats, matching, signals
from moderation.banned_index import BannedIndex, entry_key, stored_variants, variant_entries
from moderation.decoding import open_image
from moderation.flagging import check_information
from moderation.hashing import CheckFingerprints, Fingerprint, fingerprint_variants
from moderation.models import HashList, SignalEntry
from moderation.pdq import MIN_QUALITY, Pdq
from moderation.pdq_index import PdqIndex, distances, parse_hex, parse_hex_many
from moderation.screening import (
    ImageSignals,
    Screening,
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

# The decisions a PDQ-list run compares (``Lookup.decisions``): the banned half as dHash flags,
# and as a PDQ-only list of each kind (``PDQ_LISTS``: the flags' orientations it carries).
DHASH = "dhash flags"
PDQ_LISTS = {"pdq 8 orientations": tuple(range(8)), "pdq upright": (0,)}
PDQ_LIST_KINDS = {"dihedral": "pdq 8 orientations", "upright": "pdq upright"}


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
    draw.rounded_rectangle(
        [x - size // 2, y - size // 3, out.width - size // 3, y + size * 4 // 3],
        radius=size // 3,
        fill=(255, 255, 255, 90),
    )
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
        draw.text(
            ((out.width - width) / 2, y),
            text,
            font=font,
            fill="white",
            stroke_width=stroke,
            stroke_fill="black",
        )
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
        draw.text(
            (width // 20, top + shown.height + bar * (i + 1) // 2 + bar * i // 2),
            line,
            font=font,
            fill=(30, 30, 30),
        )
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
    Edit(
        "blur",
        _jpeg(lambda img: img.filter(ImageFilter.GaussianBlur(max(1.0, min(img.size) / 400)))),
    ),
    Edit("noise", lambda img, rng: _encode(_noise(img, rng), "JPEG")),
    Edit("watermark", _jpeg(_watermark)),
    Edit("caption text", _jpeg(caption)),
    Edit("crop 5%", _jpeg(lambda img: _crop(img, 0.05))),
    Edit("crop 10%", _jpeg(lambda img: _crop(img, 0.10)), "crop"),
    Edit("crop 20%", _jpeg(lambda img: _crop(img, 0.20)), "hard"),
    Edit("one-sided crop 5%", _one_sided_crop(0.05), "crop"),
    Edit("one-sided crop 10%", _one_sided_crop(0.10), "crop"),
    Edit("padding 10%", _jpeg(_pad), "hard"),
    Edit(
        "rotate 3°",
        _jpeg(lambda img: img.convert("RGB").rotate(3, resample=Image.Resampling.BICUBIC)),
    ),
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
    # A PDQ-list run: the decision of each way of holding the banned half (``DHASH`` and
    # ``PDQ_LISTS``' names), and the upload PDQ's distance to the nearest entry of the run's
    # list (256 when it has none) and its quality.
    decisions: dict[str, str] = field(default_factory=dict)
    pdq_distance: int | None = None
    pdq_quality: int | None = None


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
    # (flag id, variant number, PDQ hex) of every stored variant with a PDQ (the orientations)
    pdqs: list[tuple[int, int, str]] = field(default_factory=list)
    decided_by: str = DHASH  # which of ``Lookup.decisions`` is ``Lookup.decision``
    pdq_entries: dict[str, int] = field(default_factory=dict)  # entries per PDQ list


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
            rows.append((flag_id, number, fp.signed, fp.phash_signed, variants[0].information))
            if fp.pdq is not None:
                run.pdqs.append((flag_id, number, fp.pdq.hex))
    index = BannedIndex()
    index.build(variant_entries(rows))
    run.entries = len(index)
    run.index_bytes = index.nbytes()
    return index


@dataclass
class PdqList:
    """A PDQ-only hash list held in memory: ``entries`` (unsaved ``SignalEntry`` rows of one
    enforced ``HashList`` at its default PDQ distance) by key, in a ``PdqIndex``."""

    hash_list: HashList
    entries: dict[int, SignalEntry]
    index: PdqIndex
    hashes: np.ndarray  # (n, 32) uint8, in ``entries`` order
    flags: np.ndarray  # int64: the flag each entry came from, in ``entries`` order

    @classmethod
    def of(cls, pdqs: Iterable[tuple[int, int, str]], *, name: str, orientations) -> PdqList:
        """The list a partner would import: each flag's PDQs of the variant numbers in
        ``orientations`` (duplicates once, as ``export_hashes`` writes them), as lines of a
        ``text`` exchange file, read back as an import reads them."""
        hash_list = HashList(pk=1, name=name)
        lines, flags, seen = [], [], set()
        for flag, number, value in pdqs:
            if number in orientations and value not in seen:
                seen.add(value)
                lines.append(hash_formats.format_entry("text", "pdq", value, "evaluation"))
                flags.append(flag)
        entries = {}
        for key, line in enumerate(lines, start=1):
            row = hash_formats.parse_line("text", line)
            entries[key] = SignalEntry(
                pk=key,
                hash_list=hash_list,
                signal_type=row.signal_type,
                value=row.value,
                tags=row.tags,
            )
        hashes = parse_hex_many([e.value for e in entries.values()])
        index = PdqIndex()
        index.build(np.array(list(entries), dtype=np.int64), hashes)
        return cls(hash_list, entries, index, hashes, np.array(flags, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.entries)

    def matches(self, value: Pdq | None) -> tuple[signals.ListMatch, ...]:
        """What an upload's PDQ matches in the list under the upload rule."""
        if value is None or not self.entries:
            return ()
        keys, dist = self.index.query(parse_hex(value.hex), self.hash_list.pdq_distance)
        rows = ((self.entries[k], d) for k, d in zip(keys.tolist(), dist.tolist(), strict=True))
        return tuple(signals.pdq_rule(rows, quality=value.quality))

    def flag_of(self, key: int) -> int:
        """The flag entry ``key`` came from."""
        return int(self.flags[key - 1])

    def nearest(self, value: Pdq | None) -> int | None:
        """Distance to the nearest entry (256 for an empty list; None without a PDQ)."""
        if value is None:
            return None
        if not self.entries:
            return 256
        return int(distances(self.hashes, parse_hex(value.hex)).min())


def pdq_lists_of(run: Run) -> dict[str, PdqList]:
    """Every kind of PDQ list (``PDQ_LISTS``) made from the run's flags."""
    lists = {
        name: PdqList.of(run.pdqs, name=name, orientations=numbers)
        for name, numbers in PDQ_LISTS.items()
    }
    run.pdq_entries = {name: len(lst) for name, lst in lists.items()}
    return lists


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
    *,
    pdq_lists: dict[str, PdqList] | None = None,
    decided_by: str = DHASH,
) -> Lookup:
    """The upload path on one file: fingerprinted as the upload form does (the re-encoding
    the site stores, and any further animation frames), checked against the index, its
    candidates verified against the flags' ``signals`` (None: by the rule alone). With
    ``pdq_lists``, also screened with no dHash flag against each list, and the decision is
    ``decided_by``'s."""
    checked = upload_fingerprints(io.BytesIO(data))
    verifier = verifier_for(data, signals)
    decision = screen(
        checked, lookup=lookup_in(index, rule), allowlist=False, verifier=verifier
    ).decision
    decisions: dict[str, str] = {}
    pdq_distance = pdq_quality = None
    if pdq_lists:
        decisions[DHASH] = decision
        first = checked.frames[0].pdq
        no_flags = screen(checked, lookup=lookup_in(BannedIndex(), rule), allowlist=False)
        for name, pdq_list in pdq_lists.items():
            with_list = Screening(no_flags.checked, no_flags.verdicts, pdq_list.matches(first))
            decisions[name] = with_list.decision
        decision = decisions[decided_by]
        if decided_by in pdq_lists:
            pdq_distance = pdq_lists[decided_by].nearest(first)
        pdq_quality = None if first is None else first.quality
    rows = [
        (m.distance, 65 if m.confirm_distance is None else m.confirm_distance, m.variant, whole)
        for m, whole in sweep_candidates(checked, index, max(SWEEP_MAX_DISTANCE, rule.radius))
        if not m.low_information
    ]
    return Lookup(
        decision,
        np.array(rows, dtype=np.int16).reshape(-1, 4),
        decisions,
        pdq_distance,
        pdq_quality,
    )


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
    """Split, flag the banned side, and look every original and edited copy up.

    ``pdq_list`` ("dihedral" or "upright", ``PDQ_LIST_KINDS``): decide against the banned
    side as a PDQ-only list of that kind instead of as dHash flags (the module docstring).
    ``progress(done, total)`` is called after each photo (with every copy of it) is looked up.
    """
    rule = matching.MatchRule.from_settings() if rule is None else rule
    run = Run(seed=seed, rule=rule)
    banned, innocent = split(photos, seed=seed, banned_fraction=banned_fraction)
    index = build_banned_index(banned, run)
    pdq_lists = None
    if pdq_list is not None:
        run.decided_by = PDQ_LIST_KINDS[pdq_list]
        pdq_lists = pdq_lists_of(run)
    banned = [p for p in banned if p.path.name in set(run.banned)]
    run.innocent = [p.path.name for p in innocent]
    total, done = len(banned) + len(innocent), 0
    for side, group in (("banned", banned), ("innocent", innocent)):
        for photo in group:
            rng = random.Random(f"{seed}:{photo.path.name}")  # noqa: S311 - reproducible edits
            for name, edit in [(ORIGINAL, None)] + [(e.name, e) for e in edits]:
                try:
                    data = photo.data if edit is None else edit.make(photo.image, rng)
                    lookup = look_up(
                        data,
                        index,
                        rule,
                        run.signals,
                        pdq_lists=pdq_lists,
                        decided_by=run.decided_by,
                    )
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
        "decided_by": run.decided_by,
        **({"signals": signal_comparison(run)} if run.decided_by != DHASH else {}),
    }


def signal_comparison(run: Run) -> dict:
    """A PDQ-list run: per edit, what each way of holding the banned half blocks (recall) and
    queues, the innocent files each blocks and queues, and the PDQ distances of the banned
    copies to the run's list (median, max); then which banned copies one signal blocks and
    the other does not."""
    names = [DHASH, *PDQ_LISTS]
    per_edit = {}
    for edit in edit_names(run):
        banned = run.lookups.get(("banned", edit), [])
        innocent = run.lookups.get(("innocent", edit), [])
        row: dict = {"banned_files": len(banned), "innocent_files": len(innocent)}
        for name in names:
            row[name] = {
                "blocked": sum(lu.decisions[name] == matching.BLOCK for lu in banned),
                "queued": sum(lu.decisions[name] == matching.REVIEW for lu in banned),
                "innocent_blocked": sum(lu.decisions[name] == matching.BLOCK for lu in innocent),
                "innocent_queued": sum(lu.decisions[name] == matching.REVIEW for lu in innocent),
            }
        dist = [lu.pdq_distance for lu in banned if lu.pdq_distance is not None]
        row["pdq_distance_median"] = float(np.median(dist)) if dist else None
        row["pdq_distance_max"] = max(dist) if dist else None
        row["low_quality"] = sum(
            lu.pdq_quality is not None and lu.pdq_quality < MIN_QUALITY for lu in banned
        )
        both = [(lu.decisions[DHASH], lu.decisions[run.decided_by]) for lu in banned]
        row["only_pdq"] = sum(p == matching.BLOCK and d != matching.BLOCK for d, p in both)
        row["only_dhash"] = sum(d == matching.BLOCK and p != matching.BLOCK for d, p in both)
        per_edit[edit] = row
    innocent = innocent_lookups(run)
    return {
        "lists": run.pdq_entries,
        "per_edit": per_edit,
        "innocent_files": len(innocent),
        "innocent": {
            name: {
                "blocked": sum(lu.decisions[name] == matching.BLOCK for lu in innocent),
                "queued": sum(lu.decisions[name] == matching.REVIEW for lu in innocent),
            }
            for name in names
        },
    }
