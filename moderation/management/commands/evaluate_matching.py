"""Measure the match rule on a folder of photos: the operator's evidence for the thresholds.

Splits the photos (seeded) into a banned half and an innocent half, flags the banned half into an
in-memory banned set exactly as the flag service would, makes the standard edited copies of
every photo (re-encodes, resizes, colour changes, crops, flips and turns, captions, screenshots;
``moderation.evaluation.EDITS``) and runs each through the upload path. Reports recall per edit
and the false positives (innocent originals and their edits that would be blocked) at the
current settings and across a range of dHash and pHash distances: a table here, a PNG chart and
a JSON file in ``--out``. Read-only: no database, no storage.

    python manage.py evaluate_matching ../shared/corpus/photos --seed 1 --out artifacts/eval

With ``--pdq-list dihedral`` (or ``upright``) the banned half is held as a PDQ-only hash list,
as a partner's list of its PDQs would arrive (the 8 orientations, or the upright one only), and
the decision is against that list alone; the report compares, per edit, what that list, the
other kind of PDQ list and the same photos as dHash flags catch, on the same lookups.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from moderation import evaluation, pdq_evaluation
from moderation.management.commands._files import iter_image_paths
from moderation.management.progress import add_progress_argument, progress_bar
from moderation.variants import VARIANTS

# dHash distances shown in the sweep table (the JSON and the chart have every one).
TABLE_DISTANCES = (0, 2, 4, 6, 8, 10, 12, 14, 16)


class Command(BaseCommand):
    help = (
        "Split a folder of photos into banned and innocent (seeded), make the standard edited "
        "copies, run them through the upload path and report recall per edit and false "
        "positives, at the current settings and across distances (table, PNG chart, JSON)."
    )

    def add_arguments(self, parser):
        parser.add_argument("photos", metavar="PHOTOS_DIR", help="Folder of photos (recursive).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the split (default 0).")
        parser.add_argument(
            "--banned-fraction",
            type=float,
            default=0.5,
            help="Share of the photos flagged as banned (default 0.5).",
        )
        parser.add_argument(
            "--out",
            default="artifacts/evaluate_matching",
            help="Folder for evaluate_matching.png and evaluate_matching.json "
            "(default artifacts/evaluate_matching).",
        )
        parser.add_argument(
            "--pdq-list",
            choices=sorted(pdq_evaluation.PDQ_LIST_KINDS),
            default=None,
            help="Decide against the banned half as a PDQ-only list (dihedral: the 8 "
            "orientations' PDQs; upright: the upright PDQ only) instead of as dHash flags.",
        )
        add_progress_argument(parser)

    def handle(self, *args, photos, seed, banned_fraction, out, pdq_list, **options):
        if not 0 < banned_fraction < 1:
            raise CommandError("--banned-fraction must be between 0 and 1.")
        folder = Path(photos)
        if not folder.is_dir():
            raise CommandError(f"{photos}: not a folder")
        self.verbosity = options["verbosity"]
        skipped: list[str] = []
        loaded = evaluation.load_photos(iter_image_paths([photos]), skipped)
        if len(loaded) < 2:
            raise CommandError(
                f"{photos}: need at least 2 readable photos, found {len(loaded)} "
                f"({len(skipped)} file(s) skipped)."
            )
        with progress_bar(self, total=None, desc="evaluate", unit="photo", options=options) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = evaluation.evaluate(
                loaded,
                seed=seed,
                banned_fraction=banned_fraction,
                progress=advance,
                pdq_list=pdq_list,
            )
        run.skipped = skipped
        result = evaluation.summary(run)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluate_matching.json").write_text(json.dumps(result, indent=1))
        chart = out_dir / "evaluate_matching.png"
        _chart(result, chart)
        if self.verbosity >= 1:
            if pdq_list is None:
                self._report(run, result)
            else:
                self._report_pdq(run, result)
            self.stdout.write(f"\nChart: {chart}\nNumbers: {out_dir / 'evaluate_matching.json'}")
            missed = result["missed_targets"]
            if missed:
                self.stdout.write(self.style.WARNING("Targets missed: " + "; ".join(missed)))
            else:
                self.stdout.write(self.style.SUCCESS("Every recall target is met."))
            if pdq_list is not None:
                self.stdout.write(_pdq_summary(result))

    # --- output ---------------------------------------------------------------------------

    def _report(self, run: evaluation.Run, result: dict) -> None:
        w = self.stdout.write
        rule = run.rule
        w(
            f"{len(run.banned)} banned and {len(run.innocent)} innocent photos (seed {run.seed}); "
            f"{len(evaluation.EDITS)} edits each; {run.entries} banned variants in the "
            f"index ({run.index_bytes / max(run.entries, 1):.0f} bytes each)."
        )
        if run.refused:
            w(f"Refused by the low-information gate (not banned): {', '.join(run.refused)}")
        for line in run.skipped:
            self.stderr.write(f"skipped: {line}")
        for line in run.errors:
            self.stderr.write(f"refused by the upload path: {line}")
        w(
            f"\nCurrent settings: block when dHash <= {rule.max_distance} AND pHash <= "
            f"{rule.max_confirm_distance} (unconfirmed rows: dHash <= "
            f"{rule.max_unconfirmed_distance}), {len(VARIANTS)} variants per flag (8 orientations, "
            f"{sum(v.is_crop for v in VARIANTS)} crops)."
        )
        w(f"{'edit':<26} {'target':>6} {'recall':>7} {'caught':>9} {'innocent blocked':>17}")
        for name, row in result["current"].items():
            target = evaluation.TARGETS[evaluation.group_of(name)]
            banned_files = row["banned_files"]
            w(
                f"{name:<26} {'-' if target is None else f'{target:.2f}':>6} "
                f"{row['recall']:7.2f} {round(row['recall'] * banned_files):>4}/{banned_files:<4} "
                f"{row['innocent_blocked']:>8}/{row['innocent_files']:<8}"
            )
        total = result["innocent_files"]
        w(
            f"{'innocent files blocked':<26} {'0':>6} {result['innocent_blocked']:>12}/{total} "
            f"({result['innocent_blocked'] / max(total, 1):.2%})"
        )
        w(
            f"review queue: {result['innocent_queued']} of {total} innocent files would be "
            f"queued, and {result['banned_missed_queued']} of the {result['banned_missed']} "
            "banned copies that were not blocked (crop 20%, padding and screenshots left out)"
        )

        w("\nAcross dHash distances (rows), for pHash confirmation off and at several distances:")
        w(
            "  min recall = the lowest recall over the routine edits (target 0.95); crop = "
            "10% and one-sided crops (target 0.80); FP = innocent files blocked of "
            f"{total}; upright = dHash alone with no orientation variants (the old rule)."
        )
        routine = [n for n in result["current"] if evaluation.group_of(n) == "routine"]
        crops = [n for n in result["current"] if evaluation.group_of(n) == "crop"]
        shown = (
            "dhash only",
            "phash<=14",
            f"phash<={rule.max_confirm_distance}",
            "phash<=18",
            "phash<=20",
        )
        keys = [k for k in result["sweep"] if k in shown]
        w(f"{'dHash':>5} {'upright FP':>10} | " + " | ".join(f"{k:^24}" for k in keys))
        head = f"{'min rec':>8} {'crop':>6} {'FP':>7}"
        w(f"{'':>5} {'':>10} | " + " | ".join(head for _ in keys))
        for d in TABLE_DISTANCES:
            cells = []
            for k in keys:
                row = result["sweep"][k][str(d)]
                cells.append(
                    f"{min(row['recall'][n] for n in routine):8.2f} "
                    f"{min((row['recall'][n] for n in crops), default=0):6.2f} "
                    f"{row['innocent_blocked']:>7}"
                )
            upright = result["upright_only_dhash_blocked"][str(d)]
            w(f"{d:>5} {upright:>10} | " + " | ".join(cells))

    def _report_pdq(self, run: evaluation.Run, result: dict) -> None:
        w = self.stdout.write
        compared = result["signals"]
        lists = compared["lists"]
        w(
            f"{len(run.banned)} banned and {len(run.innocent)} innocent photos (seed {run.seed}); "
            f"{len(evaluation.EDITS)} edits each. Decided against a PDQ-only list "
            f"({compared['decided_by']}); the banned half as PDQ lists: "
            + ", ".join(f"{name} {n} entries" for name, n in lists.items())
            + f"; as dHash flags: {run.entries} variants."
        )
        if run.refused:
            w(f"Refused by the low-information gate (not banned): {', '.join(run.refused)}")
        for line in run.skipped:
            self.stderr.write(f"skipped: {line}")
        for line in run.errors:
            self.stderr.write(f"refused by the upload path: {line}")
        names = [pdq_evaluation.DHASH, *pdq_evaluation.PDQ_LISTS]
        w(
            "\nBanned copies blocked (queued) per edit; innocent files blocked / queued; the "
            f"PDQ distance of the banned copies to the {compared['decided_by']} list (median, max; "
            "the line is 31):"
        )
        w(f"{'edit':<26} " + " ".join(f"{n:>20}" for n in names) + f" {'PDQ dist':>9}  innocent")
        for edit, row in compared["per_edit"].items():
            n = row["banned_files"]
            cells = " ".join(
                f"{row[name]['blocked']:>3}/{n:<3} ({row[name]['queued']:>2})".rjust(20)
                for name in names
            )
            med, top = row["pdq_distance_median"], row["pdq_distance_max"]
            dist = "-" if med is None else f"{med:.0f}, {top}"
            innocent = " ".join(
                f"{row[name]['innocent_blocked']}/{row[name]['innocent_queued']}" for name in names
            )
            w(f"{edit:<26} {cells} {dist:>9}  {innocent}")
        decided = compared["decided_by"]
        only_pdq = [e for e, r in compared["per_edit"].items() if r["only_pdq"]]
        only_dhash = [e for e, r in compared["per_edit"].items() if r["only_dhash"]]
        w(
            f"\nBlocked by {decided} and not by dHash flags: "
            + (
                ", ".join(f"{e} ({compared['per_edit'][e]['only_pdq']})" for e in only_pdq)
                or "none"
            )
        )
        w(
            f"Blocked by dHash flags and not by {decided}: "
            + (
                ", ".join(f"{e} ({compared['per_edit'][e]['only_dhash']})" for e in only_dhash)
                or "none"
            )
        )
        total = compared["innocent_files"]
        w(
            "Innocent files (originals and edits): "
            + "; ".join(
                f"{name}: {v['blocked']} blocked, {v['queued']} queued"
                for name, v in compared["innocent"].items()
            )
            + f" (of {total})"
        )


def _pdq_summary(result: dict) -> str:
    """The last line of a PDQ-list run: for each way of holding the banned half, the banned
    copies blocked (every edit but the hard ones) and the innocent files blocked and queued."""
    compared = result["signals"]
    parts = []
    for name, innocent in compared["innocent"].items():
        rows = [
            r for edit, r in compared["per_edit"].items() if evaluation.group_of(edit) != "hard"
        ]
        blocked = sum(r[name]["blocked"] for r in rows)
        files = sum(r["banned_files"] for r in rows)
        parts.append(
            f"{name}: {blocked}/{files} banned copies blocked, "
            f"{innocent['blocked']} innocent blocked, {innocent['queued']} queued"
        )
    return (
        f"summary ({compared['innocent_files']} innocent files; crop 20%, padding, screenshot "
        "left out of the banned copies): " + "; ".join(parts)
    )


def _chart(result: dict, path: Path) -> None:
    """Recall per edit and false positives against the dHash distance, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distances = list(range(evaluation.SWEEP_MAX_DISTANCE + 1))
    rule = result["rule"]
    confirm_key = f"phash<={rule['max_confirm_distance']}"
    if confirm_key not in result["sweep"]:
        confirm_key = "phash<=18"
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 7), constrained_layout=True)
    names = list(result["current"])
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        recall = [result["sweep"][confirm_key][str(d)]["recall"][name] for d in distances]
        style = {"routine": "-", "crop": "--", "hard": ":"}[evaluation.group_of(name)]
        left.plot(distances, recall, style, color=cmap(i % 20), label=name, linewidth=1.2)
    left.axvline(rule["max_distance"], color="black", linewidth=0.8)
    left.set(
        title=f"Recall per edit ({len(VARIANTS)} variants, {confirm_key.replace('<=', ' <= ')})",
        xlabel="MODERATION_MAX_DISTANCE (dHash bits, <=)",
        ylabel="share of banned photos' copies blocked",
        ylim=(0, 1.02),
    )
    left.grid(alpha=0.3)
    # Legends beside the plots, never over the curves (constrained layout makes room).
    left.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    total = max(result["innocent_files"], 1)
    for key, values in result["sweep"].items():
        blocked = [values[str(d)]["innocent_blocked"] / total * 100 for d in distances]
        right.plot(distances, blocked, marker=".", label=key.replace("<=", " <= "))
    upright = [result["upright_only_dhash_blocked"][str(d)] / total * 100 for d in distances]
    right.plot(distances, upright, "k--", label="dHash only, upright only (old rule)")
    right.axvline(rule["max_distance"], color="black", linewidth=0.8)
    right.set(
        title=f"Innocent files blocked ({result['innocent_files']} files)",
        xlabel="MODERATION_MAX_DISTANCE (dHash bits, <=)",
        ylabel="% of innocent originals and edits blocked",
    )
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        f"evaluate_matching: {len(result['banned'])} banned / {len(result['innocent'])} innocent "
        f"photos, seed {result['seed']}"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
