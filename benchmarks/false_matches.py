"""False matches at scale: how often the current rule blocks an innocent picture.

    python benchmarks/false_matches.py PHOTOS_DIR [--seed N] [--grids 1 2 3 4 5]
                                       [--out DIR] [--limit-photos N]

Every photo is cut into non-overlapping g x g tiles (JPEG q90) for each grid; the photos are
split (seeded) into two halves; each half's tiles are flagged as the flag service does and the
other half's tiles checked through the upload decision, both ways round
(``moderation/false_matches.py`` says exactly how). No checked tile shares a pixel with any
flag, so every block is a false block. Prints, per direction, the innocent tiles blocked and
queued for review; the per-(upload, flag)-pair false-match rate at the site's rule and across
(dHash, pHash) distances; and what that rate means for a banned set of 10k, 100k and 1M flags.
Writes ``false_matches.json``, ``false_matches.png`` (the chart) and ``false_matches_blocked.png``
(the blocked tiles beside the flag behind each block) into ``--out``. A few minutes for the 72
corpus photos (~4,000 tiles). Not part of the test run.

    python benchmarks/false_matches.py PHOTOS_DIR --pdq-list dihedral|upright

holds each half's flags as a PDQ-only list instead (their 8 orientations' PDQs, or the upright
one: what a partner imports from ``export_hashes --banned-set``) and checks the other half's
tiles against that list alone: innocent tiles blocked and queued, the per-pair rate at the
list's PDQ distance and across PDQ distances, and the nearest any innocent tile came.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from moderation import evaluation, false_matches, matching, pdq_evaluation  # noqa: E402
from moderation.management.commands._files import iter_image_paths  # noqa: E402

TABLE_PHASH = (12, 14, 16, 18, 20)


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _rate(value: float, bound: bool) -> str:
    return f"{'< ' if bound else ''}{value:.1e}"


def report(result: dict, seconds: dict[str, float]) -> None:
    rule = result["rule"]
    d0, p0 = rule["max_distance"], rule["max_confirm_distance"]
    print(f"rule: dHash <= {d0} AND pHash <= {p0} (review: dHash <= {rule['review_distance']}, "
          f"pHash <= {rule['review_confirm_distance']}); seed {result['seed']}, grids "
          f"{' '.join(map(str, result['grids']))}")
    print()
    print("| direction | tiles flagged (refused) | tiles checked | blocked | queued | "
          "matched pairs / pairs | rate per pair |")
    print("|---|---|---|---|---|---|---|")
    for name, d in result["directions"].items():
        print(f"| {name} | {d['flagged']} ({len(d['refused_low_information'])}) | {d['checked']} "
              f"| {d['blocked']} ({_pct(d['blocked'], d['checked'])}) "
              f"| {d['queued']} ({_pct(d['queued'], d['checked'])}) "
              f"| {d['matched_pairs']:,} / {d['pairs']:,} "
              f"| {_rate(d['rate'], d['rate_is_bound'])} |")
    print(f"| both | | | | | {result['matched_pairs']:,} / {result['pairs']:,} "
          f"| **{_rate(result['rate'], result['rate_is_bound'])}** |")
    print()
    grids = sorted({int(g) for d in result["directions"].values() for g in d["by_grid"]})
    print("| checked tile's grid | " + " | ".join(f"{g}x{g}" for g in grids) + " |")
    print("|---" * (len(grids) + 1) + "|")
    for what in ("blocked", "queued"):
        cells = []
        for g in grids:
            rows = [d["by_grid"].get(g, d["by_grid"].get(str(g))) for d in
                    result["directions"].values()]
            rows = [r for r in rows if r]
            cells.append(_pct(sum(r[what] for r in rows), sum(r["checked"] for r in rows)))
        print(f"| {what} (both directions) | " + " | ".join(cells) + " |")
    print()
    print("Per-pair rate across distances (dHash <= d AND pHash <= p; '<': no pair matched, "
          "the rule of three's 95% bound):")
    print("| dHash <= | " + " | ".join(f"pHash <= {p}" for p in TABLE_PHASH) + " |")
    print("|---" * (len(TABLE_PHASH) + 1) + "|")
    for d in false_matches.SWEEP_DHASH:
        cells = []
        for p in TABLE_PHASH:
            s = result["sweep"][f"{d},{p}"]
            cell = f"{_rate(s['rate'], s['rate_is_bound'])} ({s['matched_pairs']})"
            cells.append(f"**{cell}**" if (d, p) == (d0, p0) else cell)
        print(f"| {d} | " + " | ".join(cells) + " |")
    print()
    bound = " (an upper bound: no false pair seen)" if result["rate_is_bound"] else ""
    print(f"Expected share of innocent uploads refused, 1 - (1 - rate)^N at rate "
          f"{result['rate']:.2e}{bound}, collisions assumed independent across flags:")
    for n, share in result["share_refused"].items():
        print(f"  {int(n):>9,} flags: {share:.1%}")
    for name, d in result["directions"].items():
        if d["predicted_blocked_share"] is not None:
            print(f"  check, direction {name}: at its own {d['flagged']:,} flags the formula "
                  f"predicts {'at most ' if d['rate_is_bound'] else ''}"
                  f"{d['predicted_blocked_share']:.1%} blocked; observed "
                  f"{_pct(d['blocked'], d['checked'])}")
    print()
    print("blocked tiles (upload <- flag behind the block):")
    for name, d in result["directions"].items():
        for b in d["blocked_pairs"]:
            print(f"  {name}: {b['upload']} <- {b['flag']} (dHash {b['dhash']}, pHash "
                  f"{b['phash']}, {b['found_by']}, {b['flags_matched']} flag(s) matched)")
    print()
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))


def report_pdq(result: dict, seconds: dict[str, float], kind: str) -> None:
    print(f"PDQ-only lists ({kind}) of each half's flags, matched at PDQ distance <= "
          f"{result['pdq_distance']}; seed {result['seed']}, grids "
          f"{' '.join(map(str, result['grids']))}")
    print()
    print("| direction | tiles flagged (refused) | list entries | tiles checked | blocked | "
          "queued | matched pairs / pairs | rate per pair | nearest PDQ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, d in result["directions"].items():
        print(f"| {name} | {d['flagged']} ({len(d['refused_low_information'])}) "
              f"| {d['pdq_entries']} | {d['checked']} "
              f"| {d['blocked']} ({_pct(d['blocked'], d['checked'])}) "
              f"| {d['queued']} ({_pct(d['queued'], d['checked'])}) "
              f"| {d['matched_pairs']:,} / {d['pairs']:,} "
              f"| {_rate(d['rate'], d['rate_is_bound'])} | {d['pdq_nearest_min']} |")
    print()
    print("Per-pair rate across PDQ distances ('<': no pair matched, the rule of three's bound):")
    print("| PDQ <= | " + " | ".join(result["sweep"]) + " |")
    print("|---" * (len(result["sweep"]) + 1) + "|")
    print("| pairs | " + " | ".join(
        f"{_rate(v['rate'], v['rate_is_bound'])} ({v['matched_pairs']})"
        for v in result["sweep"].values()) + " |")
    print()
    for name, d in result["directions"].items():
        for b in d["blocked_pairs"]:
            print(f"  blocked, {name}: {b['upload']} <- {b['flag']} (PDQ {b['pdq']})")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    blocked = sum(d["blocked"] for d in result["directions"].values())
    queued = sum(d["queued"] for d in result["directions"].values())
    checked = sum(d["checked"] for d in result["directions"].values())
    nearest = min((d["pdq_nearest_min"] for d in result["directions"].values()
                   if d["pdq_nearest_min"] is not None), default=None)
    print(f"summary: PDQ-only lists ({kind}): {blocked} of {checked} innocent tiles blocked, "
          f"{queued} queued; {result['matched_pairs']} of {result['pairs']:,} pairs matched "
          f"(rate {_rate(result['rate'], result['rate_is_bound'])}); nearest innocent PDQ "
          f"distance {nearest}")


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rule = result["rule"]
    p0 = rule["max_confirm_distance"]
    ds = list(false_matches.SWEEP_DHASH)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for p in (p0 - 2, p0, p0 + 2):
        rows = [result["sweep"].get(f"{d},{p}") for d in ds]
        if any(r is None for r in rows):
            continue
        rates = [r["rate"] for r in rows]
        style = {"lw": 2.5 if p == p0 else 1, "alpha": 1 if p == p0 else 0.6}
        line, = left.plot(ds, rates, "o-", label=f"pHash <= {p}", **style)
        for d, r in zip(ds, rows):
            if r["rate_is_bound"]:  # hollow: the rule of three's bound, not a measurement
                left.plot([d], [r["rate"]], "o", mfc="white", color=line.get_color())
        if p == p0:
            for n in false_matches.SCALES:
                right.plot(ds, [r["share_refused"][str(n)] for r in rows], "o-",
                           label=f"{n:,} flags")
    left.axvline(rule["max_distance"], color="grey", ls=":", label="site's dHash distance")
    left.set_yscale("log")
    left.set_xlabel("dHash distance <= d")
    left.set_ylabel("false matches per (upload, flag) pair")
    left.set_title("per-pair false-match rate (hollow: 95% bound, none seen)")
    left.legend(fontsize=8)
    right.axvline(rule["max_distance"], color="grey", ls=":")
    right.set_ylim(0, 1.02)
    right.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    right.set_xlabel(f"dHash distance <= d (pHash <= {p0})")
    right.set_ylabel("expected share of innocent uploads refused")
    right.set_title("1 - (1 - rate)^N, independent collisions assumed")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", metavar="PHOTOS_DIR")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--grids", type=int, nargs="+", default=list(false_matches.GRIDS),
                        choices=range(1, 6), help="grids g (g x g tiles; default 1 2 3 4 5)")
    parser.add_argument("--out", default="artifacts/false_matches", help="output folder")
    parser.add_argument("--limit-photos", type=int, default=None,
                        help="use the first N photos (by name), for a quick run")
    parser.add_argument("--pdq-list", choices=sorted(pdq_evaluation.PDQ_LIST_KINDS), default=None,
                        help="hold the flags as a PDQ-only list (dihedral: 8 orientations' PDQs; "
                        "upright: the upright PDQ) and check against that list alone")
    args = parser.parse_args()
    started = time.perf_counter()
    skipped: list[str] = []
    paths = sorted(iter_image_paths([args.photos]), key=lambda p: p.name)
    photos = evaluation.load_photos(paths[: args.limit_photos], skipped)
    if len(photos) < 2:
        sys.exit(f"{args.photos}: need at least 2 readable photos, found {len(photos)}")
    for why in skipped:
        print(f"skipped {why}", file=sys.stderr)
    rule = matching.MatchRule.from_settings()
    seconds = {"load": time.perf_counter() - started}
    directions = false_matches.run_both(
        photos, seed=args.seed, grids=args.grids, rule=rule,
        progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
        pdq_list=args.pdq_list,
    )
    seconds["tile, flag and check"] = time.perf_counter() - started - seconds["load"]
    if args.pdq_list is not None:
        result = false_matches.pdq_summary(directions, seed=args.seed, grids=args.grids)
        result["photos"], result["skipped"] = len(photos), skipped
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        sheet = false_matches.blocked_sheet(directions)
        if sheet is not None:
            sheet.save(out / "false_matches_pdq_blocked.png")
        seconds["total"] = time.perf_counter() - started
        result["seconds"] = seconds
        (out / "false_matches_pdq.json").write_text(json.dumps(result, indent=1))
        print(f"{len(photos)} photos, {sum(len(d.checks) for d in directions)} tiles checked; "
              f"wrote {out / 'false_matches_pdq.json'}")
        report_pdq(result, seconds, args.pdq_list)
        return
    result = false_matches.summary(directions, seed=args.seed, grids=args.grids, rule=rule)
    result["photos"] = len(photos)
    result["skipped"] = skipped
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chart(result, out / "false_matches.png")
    sheet = false_matches.blocked_sheet(directions)
    if sheet is not None:
        sheet.save(out / "false_matches_blocked.png")
    seconds["total"] = time.perf_counter() - started
    result["seconds"] = seconds
    (out / "false_matches.json").write_text(json.dumps(result, indent=1))
    print(f"{len(photos)} photos, {sum(len(d.checks) for d in directions)} tiles checked")
    report(result, seconds)
    blocked = sum(d["blocked"] for d in result["directions"].values())
    print(f"wrote {out / 'false_matches.json'}, {out / 'false_matches.png'}"
          + (f", {out / 'false_matches_blocked.png'} (the first "
             f"{min(blocked, false_matches.SHEET_LIMIT)} of {blocked} blocked tiles)"
             if sheet is not None else ""))


if __name__ == "__main__":
    main()
