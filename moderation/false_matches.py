"""False matches at scale: how often an innocent upload collides with a flag of another picture.

``benchmarks/false_matches.py PHOTOS_DIR`` is the front end; this module holds the tiling, the
split, the two-direction run, the pair counting and the scaling, and touches no database.

How a run works
---------------
Every photo is cut into the non-overlapping tiles of a g x g grid for each g in ``grids``
(each tile saved as a JPEG, quality 90): natural pictures of many sizes, and no two tiles of
*different* photos share a pixel. The photos (not the tiles) are split, seeded, into two
halves (``evaluation.split``). Direction A flags every tile of half 1 exactly as
``evaluation.build_banned_index`` does (the information gate ``flagging.check_information``,
the stored variants, the index entries a process loads) and checks every tile of half 2
through the upload decision (``screening.upload_fingerprints`` -- the re-encoding the profile
form stores -- then ``screening.screen`` against that index under the site's rule, allowlist
aside); direction B the other way round. Every checked tile is innocent of every flag, so each
block is a false block, each queued tile a moderator's wasted look.

The per-pair rate counts (upload, flag) pairs directly: per checked tile, the distinct flags its
verdicts match (informative flags only: the gate refuses the others), over checked tiles x
flags. The same lookups also keep every candidate within ``SWEEP_MAX_DISTANCE`` dHash bits
with its pHash distance (``evaluation.sweep_candidates``), so a grid of (dHash <= d, pHash <= p)
rules is scored without a second lookup.

What the rate means for a banned set of N flags: ``share_refused`` = 1 - (1 - rate)^N, which
assumes a picture's collisions with different flags are independent (they are not quite: a
smooth picture collides with many flags, a busy one with none, so the share of *distinct*
uploads refused is lower than this and the refused ones are refused many times over). When no
false pair is seen, the rate given is the 95% upper bound 3 / pairs (the rule of three).

Against PDQ-only lists (``pdq_list``, the benchmark's ``--pdq-list``): each half's tiles are
flagged the same way (the same gate), but held as a PDQ-only list of their flags' PDQs
(``pdq_evaluation.PdqList``: the 8 orientations or the upright one, as a partner's list
arrives),
and each checked tile is screened with no dHash flag against that list under the upload rule
(``signals.pdq_rule``: PDQ distance 31, low quality only queued). A pair matches when the
rule matches it; the candidates kept are each flag's nearest PDQ within ``PDQ_REACH`` bits,
so the rate is also given across PDQ distances (``PDQ_SWEEP``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from PIL import Image, ImageDraw

from moderation import evaluation, matching, pdq_evaluation, signals
from moderation.banned_index import BannedIndex
from moderation.evaluation import SWEEP_MAX_DISTANCE, Photo
from moderation.pdq_index import distances, parse_hex
from moderation.screening import Screening, lookup_in, screen, upload_fingerprints

GRIDS = (1, 2, 3, 4, 5)
JPEG_QUALITY = 90
# The rules scored across distances (dHash <= d AND pHash <= p).
SWEEP_DHASH = tuple(range(8, SWEEP_MAX_DISTANCE + 1))
SWEEP_PHASH = tuple(range(12, 21))
# Banned-set sizes the per-pair rate is scaled to.
SCALES = (10_000, 100_000, 1_000_000)
NO_PHASH = 65  # a candidate without a pHash distance: never within a pHash rule
SHEET_LIMIT = 60  # blocked pairs drawn on the contact sheet (all are listed in the JSON)
# PDQ-list runs: candidates kept up to this many bits (the index's probing limit), and the
# distances the per-pair rate is given at (31: the line lists are matched at).
PDQ_REACH = 63
PDQ_SWEEP = (31, 36, 40, 44, 48, 52, 56, 60, 63)


# --- tiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One tile of a photo: the cell (``row``, ``column``) of its ``grid`` x ``grid`` cut, as
    the bytes of a JPEG file."""

    photo: str
    grid: int
    row: int
    column: int
    data: bytes = field(repr=False)

    @property
    def name(self) -> str:
        """``photo.jpg#3x3-r1c2``: where a human finds the tile (rows and columns from 0)."""
        return f"{self.photo}#{self.grid}x{self.grid}-r{self.row}c{self.column}"


def tile_boxes(width: int, height: int, grid: int) -> list[tuple[int, int, int, int]]:
    """The ``grid`` x ``grid`` cells of a ``width`` x ``height`` picture as (left, top, right,
    bottom) boxes, row by row: edge to edge, no overlap, every pixel in exactly one cell."""
    xs = [round(i * width / grid) for i in range(grid + 1)]
    ys = [round(j * height / grid) for j in range(grid + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(grid) for i in range(grid)]


def cut_tiles(photo: Photo, grids: Iterable[int] = GRIDS) -> list[Tile]:
    """Every tile of ``photo`` (upright) for each grid, each saved as a JPEG (quality 90)."""
    tiles = []
    for grid in grids:
        for n, box in enumerate(tile_boxes(photo.image.width, photo.image.height, grid)):
            out = io.BytesIO()
            photo.image.crop(box).save(out, format="JPEG", quality=JPEG_QUALITY)
            tiles.append(Tile(photo.path.name, grid, n // grid, n % grid, out.getvalue()))
    return tiles


def split_photos(photos: list[Photo], *, seed: int) -> tuple[list[Photo], list[Photo]]:
    """The photos in two halves, seeded (``evaluation.split``): tiles of one photo stay on one
    side, so no flag and checked tile ever share a pixel."""
    return evaluation.split(photos, seed=seed, banned_fraction=0.5)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Checked:
    """One checked tile: the upload decision, the flags its verdicts match, and every candidate
    within the sweep's reach as ``(flag, dHash distance, pHash distance or 65)`` rows."""

    tile: Tile
    decision: str
    matched: frozenset[int]  # flag ids (1-based positions in ``Direction.offered``)
    nearest: matching.Match | None  # the match behind a block
    candidates: np.ndarray  # int32, shape (n, 3)
    # PDQ-list runs: the list entry behind a block, and the PDQ distance to the nearest entry
    # (candidates' rows are then (flag, PDQ distance, 0)).
    list_match: signals.ListMatch | None = None
    pdq_nearest: int | None = None


@dataclass
class Direction:
    """One direction: ``offered`` tiles flagged (flag id i + 1 is ``offered[i]``; the gate
    refused ``refused``), every tile of the other half checked."""

    name: str
    offered: list[Tile]
    flags: int = 0
    refused: list[str] = field(default_factory=list)
    checks: list[Checked] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # tiles the upload path refused to read
    pdq_entries: int | None = None  # a PDQ-list run: the list's entries
    pdq_list: pdq_evaluation.PdqList | None = field(default=None, repr=False)

    @property
    def pairs(self) -> int:
        """(upload, flag) pairs compared: every checked tile against every flag."""
        return len(self.checks) * self.flags

    @property
    def matched_pairs(self) -> int:
        return sum(len(c.matched) for c in self.checks)

    def with_decision(self, decision: str) -> list[Checked]:
        return [c for c in self.checks if c.decision == decision]

    def flag_tile(self, flag_id: int) -> Tile:
        return self.offered[flag_id - 1]


def flag_tiles(
    tiles: list[Tile], rule: matching.MatchRule
) -> tuple[BannedIndex, list[str], int, dict[int, bytes]]:
    """Flag every tile as the flag service does (``evaluation.build_banned_index``): (the
    index, the tiles the information gate refused, how many were flagged, their verification
    signals by flag id)."""
    run = evaluation.Run(seed=0, rule=rule)
    offered = [Photo(Path(t.name), None, t.data) for t in tiles]
    index = evaluation.build_banned_index(offered, run)
    return index, run.refused, len(run.banned), run.signals


def check_tile(
    tile: Tile,
    index: BannedIndex,
    rule: matching.MatchRule,
    signals: dict[int, bytes] | None = None,
) -> Checked:
    """The upload decision on one tile (re-encoded as the profile form stores it, screened
    against ``index`` under ``rule``, its candidates verified against the flags' ``signals``,
    no allowlist) and every candidate for the sweep (the rule's, before verification)."""
    checked = upload_fingerprints(io.BytesIO(tile.data))
    screening = screen(
        checked,
        lookup=lookup_in(index, rule),
        allowlist=False,
        verifier=evaluation.verifier_for(tile.data, signals),
    )
    matched = frozenset(
        m.fingerprint_id for v in screening.verdicts for m in v.matches if not m.low_information
    )
    reach = max(SWEEP_MAX_DISTANCE, rule.radius)
    rows = [
        (
            m.fingerprint_id,
            m.distance,
            NO_PHASH if m.confirm_distance is None else m.confirm_distance,
        )
        for m, _ in evaluation.sweep_candidates(checked, index, reach)
        if not m.low_information
    ]
    return Checked(
        tile,
        screening.decision,
        matched,
        screening.nearest,
        np.array(rows, dtype=np.int32).reshape(-1, 3),
    )


def pdq_list_of_tiles(
    tiles: list[Tile], kind: str
) -> tuple[pdq_evaluation.PdqList, list[str], int]:
    """Flag every tile as ``flag_tiles`` does (the same gate) and hold the flags as a PDQ-only
    list of ``kind`` (``pdq_evaluation.PDQ_LIST_KINDS``): (the list, refused tiles, flags)."""
    run = evaluation.Run(seed=0, rule=matching.MatchRule.from_settings())
    evaluation.build_banned_index([Photo(Path(t.name), None, t.data) for t in tiles], run)
    name = pdq_evaluation.PDQ_LIST_KINDS[kind]
    pdq_list = pdq_evaluation.lists_of(run.pdqs, first=kind)[name]
    return pdq_list, run.refused, len(run.banned)


def check_tile_pdq(
    tile: Tile, pdq_list: pdq_evaluation.PdqList, rule: matching.MatchRule
) -> Checked:
    """The upload decision on one tile against a PDQ-only list (no dHash flag), with each
    flag's nearest PDQ within ``PDQ_REACH`` as the candidates."""
    checked = upload_fingerprints(io.BytesIO(tile.data))
    no_flags = screen(checked, lookup=lookup_in(BannedIndex(), rule), allowlist=False)
    first = checked.frames[0].pdq
    found = pdq_list.matches(first)
    screening = Screening(no_flags.checked, no_flags.verdicts, found)
    matched = frozenset(pdq_list.flag_of(m.entry_id) for m in found)
    rows = np.zeros((0, 3), dtype=np.int32)
    nearest = None
    if first is not None and len(pdq_list):
        dist = distances(pdq_list.hashes, parse_hex(first.hex))
        nearest = int(dist.min())
        near = dist <= PDQ_REACH
        order = np.lexsort((dist[near], pdq_list.flags[near]))
        flags, dists = pdq_list.flags[near][order], dist[near][order]
        first_of_flag = np.r_[True, flags[1:] != flags[:-1]] if len(flags) else flags.astype(bool)
        rows = np.stack(
            [flags[first_of_flag], dists[first_of_flag], np.zeros(first_of_flag.sum())], axis=1
        ).astype(np.int32)
    block = next((m for m in found if m.blocks), None)
    return Checked(tile, screening.decision, matched, None, rows, block, nearest)


def run_direction(
    name: str,
    flagged: list[Tile],
    checked: list[Tile],
    rule: matching.MatchRule,
    progress: Callable[[str], None] | None = None,
    *,
    pdq_list: str | None = None,
) -> Direction:
    """Flag ``flagged``, then check every tile of ``checked`` against those flags (with
    ``pdq_list``, against them held as a PDQ-only list of that kind)."""
    direction = Direction(name, flagged)
    if pdq_list is None:
        index, direction.refused, direction.flags, signals = flag_tiles(flagged, rule)
    else:
        held, direction.refused, direction.flags = pdq_list_of_tiles(flagged, pdq_list)
        direction.pdq_entries, direction.pdq_list = len(held), held
    for i, tile in enumerate(checked):
        if progress and i % 100 == 0:
            progress(f"{name}: checked {i}/{len(checked)}")
        try:
            if pdq_list is None:
                direction.checks.append(check_tile(tile, index, rule, signals))
            else:
                direction.checks.append(check_tile_pdq(tile, held, rule))
        except ValidationError as e:
            direction.errors.append(f"{tile.name}: {' '.join(e.messages)}")
    return direction


def run_both(
    photos: list[Photo],
    *,
    seed: int = 0,
    grids: Iterable[int] = GRIDS,
    rule: matching.MatchRule | None = None,
    progress: Callable[[str], None] | None = None,
    pdq_list: str | None = None,
) -> tuple[Direction, Direction]:
    """Tile, split, and run direction A (half 1 flagged, half 2 checked) and B (the reverse);
    with ``pdq_list``, the flags held as a PDQ-only list of that kind."""
    rule = matching.MatchRule.from_settings() if rule is None else rule
    grids = tuple(grids)
    half1, half2 = split_photos(photos, seed=seed)
    tiles1 = [t for p in half1 for t in cut_tiles(p, grids)]
    tiles2 = [t for p in half2 for t in cut_tiles(p, grids)]
    return (
        run_direction("A", tiles1, tiles2, rule, progress, pdq_list=pdq_list),
        run_direction("B", tiles2, tiles1, rule, progress, pdq_list=pdq_list),
    )


# --- counting and scaling -------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A per-pair rate: ``matched`` of ``pairs``; when nothing matched, ``value`` is the rule
    of three's 95% upper bound (``bound`` True), not an estimate."""

    matched: int
    pairs: int

    @property
    def bound(self) -> bool:
        return self.matched == 0

    @property
    def value(self) -> float:
        if self.pairs == 0:
            return math.nan
        return 3 / self.pairs if self.matched == 0 else self.matched / self.pairs


def share_refused(rate: float, flags: int) -> float:
    """Expected share of innocent uploads refused by ``flags`` flags at a per-pair ``rate``:
    1 - (1 - rate)^flags, assuming independent collisions (computed without cancellation)."""
    return -math.expm1(flags * math.log1p(-rate))


def pairs_within(
    directions: Sequence[Direction], dhash: Iterable[int], phash: Iterable[int]
) -> dict[tuple[int, int], int]:
    """Matched (upload, flag) pairs under each plain rule dHash <= d AND pHash <= p, from the
    lookups' candidates: a pair matches when any of its candidates (whole, cut, framed
    picture; any variant) is within both. Counted over every direction."""
    stride = max((len(d.offered) for d in directions), default=0) + 1  # flag ids: 1..offered
    keyed, tile = [], 0
    for direction in directions:
        for c in direction.checks:
            if len(c.candidates):
                rows = c.candidates.astype(np.int64)
                rows[:, 0] += tile * stride  # one key per (checked tile, flag)
                keyed.append(rows)
            tile += 1
    rows = np.concatenate(keyed) if keyed else np.zeros((0, 3), np.int64)
    return {
        (d, p): int(np.unique(rows[(rows[:, 1] <= d) & (rows[:, 2] <= p), 0]).size)
        for d in dhash
        for p in phash
    }


def by_grid(direction: Direction) -> dict[int, dict[str, int]]:
    """Checked, blocked and queued tiles per grid of the checked tile."""
    out: dict[int, dict[str, int]] = {}
    for c in direction.checks:
        row = out.setdefault(c.tile.grid, {"checked": 0, "blocked": 0, "queued": 0})
        row["checked"] += 1
        row["blocked"] += c.decision == matching.BLOCK
        row["queued"] += c.decision == matching.REVIEW
    return dict(sorted(out.items()))


def blocked_pairs(direction: Direction) -> list[dict]:
    """Each blocked tile with the flag behind its block, for a human to look at."""
    if direction.pdq_list is not None:
        return [
            {
                "upload": c.tile.name,
                "flag": direction.flag_tile(direction.pdq_list.flag_of(c.list_match.entry_id)).name,
                "pdq": c.list_match.distance,
                "flags_matched": len(c.matched),
            }
            for c in direction.with_decision(matching.BLOCK)
        ]
    return [
        {
            "upload": c.tile.name,
            "flag": direction.flag_tile(c.nearest.fingerprint_id).name,
            "dhash": c.nearest.distance,
            "phash": c.nearest.confirm_distance,
            "found_by": c.nearest.found_by_kind,
            "variant": c.nearest.variant_name,
            "flags_matched": len(c.matched),
        }
        for c in direction.with_decision(matching.BLOCK)
    ]


def direction_summary(direction: Direction) -> dict:
    checked = len(direction.checks)
    blocked = len(direction.with_decision(matching.BLOCK))
    queued = len(direction.with_decision(matching.REVIEW))
    rate = Rate(direction.matched_pairs, direction.pairs)
    return {
        "offered": len(direction.offered),
        "flagged": direction.flags,
        "refused_low_information": direction.refused,
        "checked": checked,
        "errors": direction.errors,
        "blocked": blocked,
        "queued": queued,
        "blocked_share": blocked / checked if checked else None,
        "queued_share": queued / checked if checked else None,
        "pairs": direction.pairs,
        "matched_pairs": direction.matched_pairs,
        "rate": rate.value,
        "rate_is_bound": rate.bound,
        # What the scaling formula predicts at this direction's own number of flags: against
        # the observed ``blocked_share``, a check of the independence assumption.
        "predicted_blocked_share": share_refused(rate.value, direction.flags)
        if direction.pairs
        else None,
        "by_grid": by_grid(direction),
        "blocked_pairs": blocked_pairs(direction),
        **(
            {
                "pdq_entries": direction.pdq_entries,
                "pdq_nearest_min": min(
                    (c.pdq_nearest for c in direction.checks if c.pdq_nearest is not None),
                    default=None,
                ),
            }
            if direction.pdq_list is not None
            else {}
        ),
    }


def pdq_pairs_within(directions: Sequence[Direction], reach: Iterable[int]) -> dict[int, int]:
    """PDQ-list runs: matched (upload, flag) pairs at each PDQ distance ``<= d``, from each
    flag's nearest PDQ (the candidates)."""
    reach = tuple(reach)
    counted = pairs_within(directions, reach, [0])
    return {d: counted[(d, 0)] for d in reach}


def pdq_summary(directions: Sequence[Direction], *, seed: int, grids: Iterable[int]) -> dict:
    """The numbers behind a PDQ-list run's report, as plain JSON-able values."""
    matched = sum(d.matched_pairs for d in directions)
    pairs = sum(d.pairs for d in directions)
    rate = Rate(matched, pairs)
    return {
        "seed": seed,
        "grids": list(grids),
        "pdq_distance": directions[0].pdq_list.hash_list.pdq_distance if directions else None,
        "directions": {d.name: direction_summary(d) for d in directions},
        "pairs": pairs,
        "matched_pairs": matched,
        "rate": rate.value,
        "rate_is_bound": rate.bound,
        "share_refused": {str(n): share_refused(rate.value, n) for n in SCALES},
        "sweep": {
            str(d): {"matched_pairs": m, "rate": Rate(m, pairs).value, "rate_is_bound": m == 0}
            for d, m in pdq_pairs_within(directions, PDQ_SWEEP).items()
        },
    }


def summary(
    directions: Sequence[Direction], *, seed: int, grids: Iterable[int], rule: matching.MatchRule
) -> dict:
    """The numbers behind the report, as plain JSON-able values."""
    matched = sum(d.matched_pairs for d in directions)
    pairs = sum(d.pairs for d in directions)
    rate = Rate(matched, pairs)
    sweep = pairs_within(directions, SWEEP_DHASH, SWEEP_PHASH)
    return {
        "seed": seed,
        "grids": list(grids),
        "rule": {
            "max_distance": rule.max_distance,
            "max_confirm_distance": rule.max_confirm_distance,
            "review_distance": rule.review_distance,
            "review_confirm_distance": rule.review_confirm_distance,
        },
        "directions": {d.name: direction_summary(d) for d in directions},
        "pairs": pairs,
        "matched_pairs": matched,
        "rate": rate.value,
        "rate_is_bound": rate.bound,
        "share_refused": {str(n): share_refused(rate.value, n) for n in SCALES},
        "sweep": {
            f"{d},{p}": {
                "matched_pairs": m,
                "rate": Rate(m, pairs).value,
                "rate_is_bound": m == 0,
                "share_refused": {str(n): share_refused(Rate(m, pairs).value, n) for n in SCALES},
            }
            for (d, p), m in sweep.items()
        },
    }


# --- a contact sheet of blocked pairs -------------------------------------------------------


def contact_sheet(
    pairs: Sequence[tuple[Tile, Tile, str]], *, thumb: int = 128, limit: int = SHEET_LIMIT
) -> Image.Image:
    """(upload tile, flag tile, caption) pairs side by side, one pair per row (first ``limit``)."""
    pairs = list(pairs)[:limit]
    caption_width = 420
    sheet = Image.new(
        "RGB", (2 * thumb + caption_width + 12, max(1, len(pairs)) * (thumb + 4)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for row, (upload, flag, caption) in enumerate(pairs):
        y = row * (thumb + 4)
        for col, tile in enumerate((upload, flag)):
            img = Image.open(io.BytesIO(tile.data)).convert("RGB")
            img.thumbnail((thumb, thumb))
            sheet.paste(img, (col * (thumb + 4), y))
        x = 2 * thumb + 12
        draw.text((x, y + 4), f"upload {upload.name}", fill="black")
        draw.text((x, y + 20), f"flag   {flag.name}", fill="black")
        draw.text((x, y + 36), caption, fill=(90, 90, 90))
    return sheet


def blocked_sheet(directions: Sequence[Direction], **kwargs) -> Image.Image | None:
    """The contact sheet of every blocked tile and the flag behind it (None: none blocked)."""
    pairs = [
        (
            c.tile,
            d.flag_tile(c.nearest.fingerprint_id),
            f"{d.name}: dHash {c.nearest.distance}, pHash {c.nearest.confirm_distance}, "
            f"{c.nearest.variant_name}",
        )
        if c.nearest is not None
        else (
            c.tile,
            d.flag_tile(d.pdq_list.flag_of(c.list_match.entry_id)),
            f"{d.name}: PDQ {c.list_match.distance}",
        )
        for d in directions
        for c in d.with_decision(matching.BLOCK)
    ]
    return contact_sheet(pairs, **kwargs) if pairs else None
