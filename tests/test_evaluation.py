"""``manage.py evaluate_matching`` on a small folder of drawn photos (the corpus run is not a test).

The command must work on any folder: here eight drawn scenes, one of them upright only through
its EXIF tag, plus a file that is not an image.
"""

from __future__ import annotations

import io
import json
import random
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from moderation import banned_index, evaluation, matching, pdq_evaluation
from tests import images

SEEDS = (101, 102, 103, 104, 105, 106, 107, 108)


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for seed in SEEDS:
        (folder / f"scene{seed}.jpg").write_bytes(
            images.encode(images.photo(seed, (480, 360)), "JPEG", quality=92)
        )
    (folder / "MANIFEST.tsv").write_text("name\tlicence\n")
    return folder


@pytest.fixture(scope="module")
def report(photos_dir, tmp_path_factory):
    """One run of the command for the whole module: (stdout, stderr, out folder, JSON)."""
    out_dir = tmp_path_factory.mktemp("evaluation")
    out, err = StringIO(), StringIO()
    call_command(
        "evaluate_matching", str(photos_dir), "--seed", "3", "--out", str(out_dir),
        "--progress", stdout=out, stderr=err,
    )
    result = json.loads((out_dir / "evaluate_matching.json").read_text())
    return out.getvalue(), err.getvalue(), out_dir, result


def test_splits_the_folder_into_banned_and_innocent_halves(report):
    _, _, _, result = report
    assert len(result["banned"]) == len(result["innocent"]) == 4
    assert set(result["banned"]).isdisjoint(result["innocent"])
    assert sorted(result["banned"] + result["innocent"]) == sorted(
        f"scene{seed}.jpg" for seed in SEEDS
    )


def test_the_split_is_seeded():
    photos = [evaluation.Photo(Path(f"p{i}.jpg"), None, b"") for i in range(10)]
    first = evaluation.split(photos, seed=7, banned_fraction=0.5)
    again = evaluation.split(list(reversed(photos)), seed=7, banned_fraction=0.5)
    other = evaluation.split(photos, seed=8, banned_fraction=0.5)
    names = [[p.path.name for p in side] for side in first]
    assert names == [[p.path.name for p in side] for side in again]
    assert names != [[p.path.name for p in side] for side in other]


def test_reports_every_edit_of_the_standard_suite(report):
    out, _, _, result = report
    expected = [evaluation.ORIGINAL] + [edit.name for edit in evaluation.EDITS]
    assert list(result["current"]) == expected
    for name in expected:
        assert name in out
        assert result["current"][name]["banned_files"] == 4
        assert result["current"][name]["innocent_files"] == 4


def test_the_banned_originals_and_their_flips_and_turns_are_all_caught(report):
    _, _, _, result = report
    for name in (evaluation.ORIGINAL, "png", "resize 50%", "mirror", "rotate 90°",
                 "rotate 180°", "rotate 270°", "EXIF-rotated phone file"):
        assert result["current"][name]["recall"] == 1.0, name


def test_no_innocent_drawn_scene_is_blocked(report):
    _, _, _, result = report
    assert result["innocent_files"] == 4 * (1 + len(evaluation.EDITS))
    assert result["innocent_blocked"] == 0


def test_reports_the_review_queue_load_and_what_it_recovers(report):
    out, _, _, result = report
    # The missed copies are the per-edit misses, summed (edits nothing global catches aside).
    per_edit_misses = sum(
        row["banned_files"] - round(row["recall"] * row["banned_files"])
        for name, row in result["current"].items()
        if evaluation.group_of(name) != "hard"
    )
    assert result["banned_missed"] == per_edit_misses
    assert 0 <= result["banned_missed_queued"] <= result["banned_missed"]
    assert 0 <= result["innocent_queued"] <= result["innocent_files"]
    assert (
        f"review queue: {result['innocent_queued']} of {result['innocent_files']} innocent "
        f"files would be queued, and {result['banned_missed_queued']} of the "
        f"{result['banned_missed']} banned copies that were not blocked"
    ) in out


def test_the_decision_at_the_current_settings_agrees_with_the_sweep(report, settings):
    """The real upload decision and the sweep's scoring of the same lookups must agree."""
    _, _, _, result = report
    rule = result["rule"]
    assert rule["max_distance"] == settings.MODERATION_MAX_DISTANCE
    key = f"phash<={rule['max_confirm_distance']}"
    swept = result["sweep"][key][str(rule["max_distance"])]
    for name, row in result["current"].items():
        assert row["recall"] == swept["recall"][name], name


def test_sweeps_recall_and_false_positives_across_distances(report):
    _, _, _, result = report
    dhash_only = result["sweep"]["dhash only"]
    assert set(dhash_only) == {str(d) for d in range(evaluation.SWEEP_MAX_DISTANCE + 1)}
    recall = [dhash_only[str(d)]["recall"]["crop 5%"] for d in range(17)]
    assert recall == sorted(recall)  # a larger distance never catches less
    blocked = [dhash_only[str(d)]["innocent_blocked"] for d in range(17)]
    assert blocked == sorted(blocked)
    assert result["upright_only_dhash_blocked"]["16"] <= blocked[16]


def test_writes_a_png_chart_and_says_where(report):
    out, _, out_dir, _ = report
    chart = out_dir / "evaluate_matching.png"
    with Image.open(chart) as img:
        assert img.format == "PNG"
        assert img.width > 800
    assert str(chart) in out


def test_skips_files_that_are_not_images_and_says_so(report):
    _, err, _, result = report
    assert "MANIFEST.tsv" in err
    assert [line.split(":")[0] for line in result["skipped"]] == ["MANIFEST.tsv"]


def test_a_file_that_is_not_an_image_is_called_that_not_given_the_upload_forms_advice(report):
    _, err, _, _ = report
    assert "skipped: MANIFEST.tsv: not a JPEG, PNG, GIF or WebP image" in err.splitlines()
    assert "Upload a" not in err


def test_asked_for_progress_it_shows_a_bar_over_every_photo_on_stderr(report):
    out, err, _, _ = report
    assert re.search(r"evaluate: 100%\|[^|]*\| 8/8 ", err)
    assert "evaluate:" not in out


def test_fails_clearly_without_enough_photos(tmp_path):
    (tmp_path / "one.jpg").write_bytes(images.encode(images.photo(1)))
    with pytest.raises(CommandError, match="at least 2 readable photos"):
        call_command("evaluate_matching", str(tmp_path), "--out", str(tmp_path / "o"))


def test_a_low_information_photo_is_refused_by_the_gate_not_banned(tmp_path):
    flat = Image.new("RGB", (320, 240), (128, 128, 130))
    photos = [
        evaluation.Photo(Path("flat.png"), flat, images.encode(flat, "PNG")),
        *(
            evaluation.Photo(Path(f"s{s}.jpg"), images.photo(s), images.encode(images.photo(s)))
            for s in (1, 2, 3)
        ),
    ]
    run = evaluation.Run(seed=0, rule=matching.MatchRule.from_settings())
    index = evaluation.build_banned_index(photos, run)
    assert [name.split(" ")[0] for name in run.refused] == ["flat.png"]
    assert run.banned == ["s1.jpg", "s2.jpg", "s3.jpg"]
    assert len(index) == run.entries == 3 * banned_index.KEYS_PER_FLAG


def test_a_photo_flagged_alone_stores_every_variant_and_the_gate_refuses_a_flat_one():
    flat = Image.new("RGB", (320, 240), (128, 128, 130))
    flat_photo = evaluation.Photo(Path("f.png"), flat, images.encode(flat, "PNG"))
    assert evaluation.flag_alone(flat_photo) is None

    scene = images.photo(5)
    entries = evaluation.flag_alone(evaluation.Photo(Path("s.jpg"), scene, images.encode(scene)))
    assert [number for number, _ in entries] == list(range(banned_index.KEYS_PER_FLAG))
    upright = entries[0][1]
    assert evaluation.index_of(entries).check(upright, matching.MatchRule.from_settings()).blocked
    without = evaluation.index_of(entries, leave_out={0, 12})
    assert len(without) == banned_index.KEYS_PER_FLAG - 2


def test_one_sided_crops_cut_a_seeded_random_side_not_always_the_right():
    img = images.photo(9, (200, 100))
    edit = next(e for e in evaluation.EDITS if e.name == "one-sided crop 10%")
    sizes = set()
    for seed in range(12):
        data = edit.make(img, random.Random(f"{seed}:p.jpg"))
        assert data == edit.make(img, random.Random(f"{seed}:p.jpg"))  # same seed, same file
        with Image.open(io.BytesIO(data)) as cropped:
            sizes.add(cropped.size)
    assert sizes == {(180, 100), (200, 90)}  # left/right cut the width, top/bottom the height


@pytest.mark.parametrize(
    ("side", "kept"),
    [("left", (20, 0, 200, 100)), ("right", (0, 0, 180, 100)),
     ("top", (0, 10, 200, 100)), ("bottom", (0, 0, 200, 90))],
)
def test_a_one_sided_crop_cuts_only_the_named_side(side, kept):
    img = images.photo(9, (200, 100))
    assert evaluation._crop_side(img, 0.1, side).tobytes() == img.crop(kept).tobytes()


# --- against a PDQ-only list ------------------------------------------------------------------

PDQ_EDITS = tuple(e for e in evaluation.EDITS if e.name in ("jpeg q60", "mirror", "crop 20%"))


@pytest.fixture(scope="module")
def pdq_run():
    """Four textured drawn scenes (two banned), three edits, against the 8-orientation list."""
    photos = []
    for seed in SEEDS[:4]:
        img = images.textured(images.photo(seed, (320, 240)), seed=seed)
        data = images.encode(img, "JPEG", quality=92)
        photos.append(evaluation.Photo(Path(f"scene{seed}.jpg"), img, data))
    return evaluation.evaluate(photos, seed=3, edits=PDQ_EDITS, pdq_list="dihedral")


def test_a_pdq_list_run_decides_by_the_8_orientation_list(pdq_run):
    compared = evaluation.summary(pdq_run)["signals"]
    assert compared["decided_by"] == "pdq 8 orientations"
    assert compared["lists"] == {"pdq 8 orientations": 16, "pdq upright": 2}
    for lookups in pdq_run.lookups.values():
        for lu in lookups:
            assert lu.decision == lu.pdq.decision == lu.pdq.decisions["pdq 8 orientations"]


def test_the_8_orientation_list_blocks_a_mirror_the_upright_list_lets_through(pdq_run):
    mirrors = pdq_run.lookups[("banned", "mirror")]
    assert [lu.pdq.decisions["pdq 8 orientations"] for lu in mirrors] == [matching.BLOCK] * 2
    assert [lu.pdq.decisions["pdq upright"] for lu in mirrors] == [matching.PASS] * 2
    for edit in (evaluation.ORIGINAL, "jpeg q60"):
        copies = pdq_run.lookups[("banned", edit)]
        assert {lu.pdq.decisions["pdq upright"] for lu in copies} == {matching.BLOCK}, edit
        assert max(lu.pdq.distance for lu in copies) <= 31, edit


def test_a_pdq_list_misses_a_20_percent_crop_that_dhash_flags_catch(pdq_run):
    crops = pdq_run.lookups[("banned", "crop 20%")]
    assert {lu.pdq.decisions["pdq 8 orientations"] for lu in crops} == {matching.PASS}
    assert min(lu.pdq.distance for lu in crops) > 31
    comparison = evaluation.summary(pdq_run)["signals"]["per_edit"]["crop 20%"]
    assert comparison["only_dhash"] == sum(
        lu.pdq.decisions[pdq_evaluation.DHASH] == matching.BLOCK for lu in crops
    )


def test_no_innocent_file_is_blocked_by_a_pdq_list(pdq_run):
    compared = evaluation.summary(pdq_run)["signals"]
    assert compared["innocent_files"] == 2 * (1 + len(PDQ_EDITS))
    for name in ("pdq 8 orientations", "pdq upright"):
        assert compared["innocent"][name]["blocked"] == 0, name


def test_the_command_reports_a_pdq_list_run_with_a_summary_last(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in SEEDS[:2]:
        img = images.textured(images.photo(seed, (240, 180)), seed=seed)
        (folder / f"scene{seed}.jpg").write_bytes(images.encode(img, "JPEG", quality=92))
    out = StringIO()
    call_command(
        "evaluate_matching", str(folder), "--pdq-list", "upright", "--out", str(tmp_path / "o"),
        stdout=out, stderr=StringIO(),
    )
    result = json.loads((tmp_path / "o" / "evaluate_matching.json").read_text())
    assert result["signals"]["decided_by"] == "pdq upright"
    per_edit = result["signals"]["per_edit"]
    assert per_edit["mirror"]["pdq upright"]["blocked"] == 0
    assert per_edit["mirror"]["pdq 8 orientations"]["blocked"] == 1
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("summary (")
    assert "pdq upright: " in last and "0 innocent blocked" in last
