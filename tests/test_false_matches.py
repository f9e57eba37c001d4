"""The false-match benchmark's pieces (``moderation/false_matches.py``) on a few drawn photos.

The corpus run is not a test; here the tiling, the split, the two directions through the real
flag and upload paths, the pair counting and the scaling are checked on small pictures.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moderation import evaluation, false_matches, matching
from moderation.false_matches import Checked, Direction, Rate, Tile
from tests import images

SEEDS = (201, 202, 203, 204)


def drawn(seed: int, size: tuple[int, int] = (320, 240)) -> evaluation.Photo:
    img = images.textured(images.photo(seed, size), seed=seed)
    return evaluation.Photo(Path(f"scene{seed}.jpg"), img, images.encode(img, "JPEG", quality=92))


@pytest.fixture(scope="module")
def rule() -> matching.MatchRule:
    return matching.MatchRule.from_settings()


@pytest.fixture(scope="module")
def both(rule) -> tuple[Direction, Direction]:
    return false_matches.run_both([drawn(s) for s in SEEDS], seed=1, grids=(1, 2), rule=rule)


@pytest.fixture(scope="module")
def same_tiles(rule) -> Direction:
    """The tiles of two photos flagged, then the very same tiles checked: true copies."""
    tiles = [t for s in SEEDS[:2] for t in false_matches.cut_tiles(drawn(s), (1, 2))]
    return false_matches.run_direction("same", tiles, tiles, rule)


# --- tiles and split ------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", [(640, 480), (641, 479), (257, 1003)])
def test_tiles_cover_the_picture_exactly_once(size, grid):
    width, height = size
    covered = np.zeros((height, width), np.int8)
    boxes = false_matches.tile_boxes(width, height, grid)
    assert len(boxes) == grid * grid
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()


def test_each_grid_gives_one_jpeg_per_cell_of_that_cell_size():
    photo = drawn(SEEDS[0], (333, 250))
    tiles = false_matches.cut_tiles(photo, (1, 3))
    assert [(t.grid, t.row, t.column) for t in tiles] == [(1, 0, 0)] + [
        (3, r, c) for r in range(3) for c in range(3)
    ]
    boxes = [(0, 0, 333, 250)] + false_matches.tile_boxes(333, 250, 3)
    for tile, (left, top, right, bottom) in zip(tiles, boxes):
        decoded = Image.open(io.BytesIO(tile.data))
        assert decoded.format == "JPEG"
        assert decoded.size == (right - left, bottom - top)
    assert tiles[5].name == "scene201.jpg#3x3-r1c1"


def test_both_directions_flag_one_half_and_check_the_other(both):
    a, b = both
    photos_a = {t.photo for t in a.offered}
    photos_b = {t.photo for t in b.offered}
    assert photos_a.isdisjoint(photos_b)
    assert photos_a | photos_b == {f"scene{s}.jpg" for s in SEEDS}
    assert len(photos_a) == len(photos_b) == 2
    assert {c.tile.photo for c in a.checks} == photos_b
    assert {c.tile.photo for c in b.checks} == photos_a
    assert len(a.offered) == len(b.offered) == 2 * (1 + 4)
    for direction in both:
        assert direction.flags + len(direction.refused) == len(direction.offered)
        assert direction.pairs == len(direction.checks) * direction.flags


def test_the_split_is_seeded_and_by_photo():
    photos = [drawn(s, (64, 48)) for s in SEEDS]
    first = false_matches.split_photos(photos, seed=5)
    again = false_matches.split_photos(photos, seed=5)
    assert [[p.path for p in half] for half in first] == [[p.path for p in half] for half in again]
    assert sorted(p.path.name for half in first for p in half) == [
        f"scene{s}.jpg" for s in SEEDS
    ]


# --- the pipeline blocks true copies --------------------------------------------------------


def test_a_flagged_tile_uploaded_again_is_blocked_by_its_own_flag(same_tiles):
    refused = {entry.split(" (")[0] for entry in same_tiles.refused}
    assert same_tiles.flags >= len(same_tiles.offered) - 2, same_tiles.refused
    for flag_id, tile in enumerate(same_tiles.offered, start=1):
        checked = next(c for c in same_tiles.checks if c.tile == tile)
        if tile.name in refused:
            assert flag_id not in checked.matched
            continue
        assert checked.decision == matching.BLOCK, tile.name
        assert flag_id in checked.matched


def test_the_sweep_at_the_site_rule_finds_every_pair_the_verdicts_match(same_tiles, rule):
    within = false_matches.pairs_within(
        [same_tiles], [rule.max_distance], [rule.max_confirm_distance]
    )
    # The verdicts stop at the whole image when it blocks; the sweep also keeps the cuts' pairs.
    assert within[(rule.max_distance, rule.max_confirm_distance)] >= same_tiles.matched_pairs
    assert same_tiles.matched_pairs >= same_tiles.flags


# --- counting and scaling -------------------------------------------------------------------


def _checked(rows: list[tuple[int, int, int]], matched=()) -> Checked:
    tile = Tile("x.jpg", 1, 0, 0, b"")
    return Checked(tile, matching.PASS, frozenset(matched), None,
                   np.array(rows, np.int32).reshape(-1, 3))


def test_a_pair_counts_once_however_many_of_its_variants_are_near():
    offered = [Tile(f"f{i}.jpg", 1, 0, 0, b"") for i in range(3)]
    direction = Direction("A", offered, flags=3, checks=[
        _checked([(1, 5, 10), (1, 7, 3), (2, 12, 16), (3, 13, 2)]),
        _checked([(1, 12, 17), (2, 3, 65)]),  # 65: no pHash, never within a pHash rule
    ])
    counts = false_matches.pairs_within([direction], [12, 13], [16, 17])
    assert counts == {(12, 16): 2, (12, 17): 3, (13, 16): 3, (13, 17): 4}
    # Two directions: the same flag number in each is a different flag.
    assert false_matches.pairs_within([direction, direction], [12], [16]) == {(12, 16): 4}


def test_the_rate_counts_matched_pairs_over_checked_tiles_times_flags():
    offered = [Tile(f"f{i}.jpg", 1, 0, 0, b"") for i in range(4)]
    direction = Direction("A", offered, flags=4, checks=[
        _checked([], matched={1, 2}), _checked([]), _checked([], matched={4}),
    ])
    assert direction.pairs == 12
    assert direction.matched_pairs == 3
    assert Rate(direction.matched_pairs, direction.pairs).value == pytest.approx(0.25)


def test_with_no_false_pair_the_rate_is_the_rule_of_three_bound():
    rate = Rate(0, 30_000)
    assert rate.bound
    assert rate.value == pytest.approx(3 / 30_000)
    assert not Rate(2, 30_000).bound
    assert Rate(2, 30_000).value == pytest.approx(2 / 30_000)


def test_share_refused_is_one_minus_the_chance_of_missing_every_flag():
    assert false_matches.share_refused(0.5, 2) == pytest.approx(0.75)
    assert false_matches.share_refused(0.0, 1_000_000) == 0.0
    assert false_matches.share_refused(1e-5, 100_000) == pytest.approx(
        1 - (1 - 1e-5) ** 100_000, rel=1e-9
    )
    # Tiny rates keep their precision (no 1 - 0.999...9 cancellation).
    assert false_matches.share_refused(1e-12, 10) == pytest.approx(1e-11, rel=1e-6)
    assert math.isnan(Rate(0, 0).value)


def test_the_summary_is_json_and_reports_both_directions(both, rule):
    result = false_matches.summary(both, seed=1, grids=(1, 2), rule=rule)
    json.dumps(result)
    assert set(result["directions"]) == {"A", "B"}
    assert result["pairs"] == sum(d.pairs for d in both)
    assert result["matched_pairs"] == sum(d.matched_pairs for d in both)
    assert set(result["share_refused"]) == {"10000", "100000", "1000000"}
    assert len(result["sweep"]) == len(false_matches.SWEEP_DHASH) * len(false_matches.SWEEP_PHASH)
    for name, direction in zip(("A", "B"), both):
        reported = result["directions"][name]
        assert reported["checked"] == len(direction.checks)
        assert sum(g["checked"] for g in reported["by_grid"].values()) == reported["checked"]
        assert len(reported["blocked_pairs"]) == reported["blocked"]


def test_the_contact_sheet_shows_each_blocked_tile_beside_its_flag(same_tiles):
    sheet = false_matches.blocked_sheet([same_tiles], thumb=64)
    blocked = len(same_tiles.with_decision(matching.BLOCK))
    assert sheet is not None
    assert sheet.height == blocked * (64 + 4)


# --- against PDQ-only lists ---------------------------------------------------------------------


def test_a_pdq_list_of_tiles_blocks_the_same_tiles_uploaded_again(rule):
    """True copies: the check can block (the benchmark's zero below means something)."""
    tiles = [t for s in SEEDS[:2] for t in false_matches.cut_tiles(drawn(s), (1,))]
    same = false_matches.run_direction("same", tiles, tiles, rule, pdq_list="dihedral")
    assert same.pdq_entries == 8 * same.flags
    assert [c.decision for c in same.checks] == [matching.BLOCK] * len(tiles)
    assert all(c.pdq_nearest <= 2 for c in same.checks)
    pairs = false_matches.blocked_pairs(same)
    assert [p["upload"] for p in pairs] == [p["flag"] for p in pairs]


def test_a_pdq_list_blocks_no_tile_of_another_photo(rule):
    directions = false_matches.run_both(
        [drawn(s) for s in SEEDS], seed=1, grids=(1, 2), rule=rule, pdq_list="dihedral"
    )
    result = false_matches.pdq_summary(directions, seed=1, grids=(1, 2))
    for d in result["directions"].values():
        assert d["blocked"] == 0
        assert d["pdq_nearest_min"] > 31
    assert result["matched_pairs"] == 0
    sweep = [result["sweep"][str(d)]["matched_pairs"] for d in false_matches.PDQ_SWEEP]
    assert sweep == sorted(sweep)  # a wider PDQ distance never matches fewer pairs
