"""Look image files up in the banned set (the seed tutorial's ``search.py``, grown up).

Prints each file's dHash, the decision an upload of it would get (``block``, ``review`` or
``pass``, see ``moderation.matching``) and the banned flags it matches, nearest first: which
variant of the flagged image matched (an orientation or a crop, ``variants.VARIANTS``), at
what dHash distance and at what confirming pHash distance, and what of the file found it: the
whole image, one of its cuts (centre, caption band) or the picture inside its frame, as the
upload path compares them. ``--json`` prints one object per line for scripts. Read-only: it
never changes the banned set.
"""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from moderation import matching
from moderation.conf import moderation_settings
from moderation.hashing import CheckFingerprints, check_fingerprints
from moderation.management.commands._files import iter_image_paths
from moderation.models import FlaggedFingerprint
from moderation.screening import ImageSignals, Verifier, lookup_in, screen


class Command(BaseCommand):
    help = (
        "Show each image's dHash, whether an upload of it would be blocked, sent to review or "
        "pass, and the banned images it matches (variant, dHash and pHash distances), "
        "nearest first. Read-only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "paths",
            nargs="+",
            metavar="PATH",
            help="Image files, or folders searched recursively (hidden entries are skipped).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help='One JSON object per line: {"path", "dhash", "phash", "information", '
            '"decision", "matches": [{"id", "list", "dhash", "distance", "reason", "variant", '
            '"found_by" (whole, cut or frame), "confirm_distance", "low_information", '
            '"inliers" (verification: keypoint pairs one similarity explains; null: not '
            'compared)}], "near": [...] (near misses that send it to review), "shadow": [...] '
            '(matches of shadow-mode lists), "rejected": [...] (candidates the hashes matched '
            'and verification showed to be another picture), "trial": [...] (what lists '
            'with a distance on trial would do)}, or {"path", "error"} for an '
            "unreadable file.",
        )
        parser.add_argument(
            "--max-distance",
            type=int,
            default=None,
            help="Override MODERATION_MAX_DISTANCE (dHash bits, <=) for this lookup, for every "
            "hash list; near misses beyond it are not reported.",
        )

    def handle(self, *args, paths, as_json: bool, max_distance, **options):
        distance = moderation_settings.MAX_DISTANCE if max_distance is None else max_distance
        if not 0 <= distance <= 64:
            raise CommandError("--max-distance must be between 0 and 64.")
        rule = matching.MatchRule.from_settings(max_distance=max_distance)
        read = 0
        for path in iter_image_paths(paths):
            try:
                with path.open("rb") as fh:
                    checked = check_fingerprints(fh)
            except (ValidationError, OSError) as e:
                message = " ".join(e.messages) if isinstance(e, ValidationError) else str(e)
                if as_json:
                    self.stdout.write(_dumps({"path": str(path), "error": message}))
                else:
                    self.stderr.write(f"{path}: error: {message}")
                continue
            read += 1
            fp = checked.frames[0]
            # The file's own picture (its first frame), as ``flag_images`` hashes it.
            first = CheckFingerprints([fp], checked.cuts, checked.inner)
            verifier = Verifier(ImageSignals.of_file(str(path)))
            verdict = screen(first, lookup=lookup_in(rule=rule), verifier=verifier).verdict
            matches = verdict.matches
            kept = {m.fingerprint_id for m in (*matches, *verdict.near, *verdict.shadow)}
            rejected = [
                m
                for m in verdict.candidates
                if m.fingerprint_id in verifier.compared and m.fingerprint_id not in kept
            ]
            shown = [
                *matches,
                *verdict.near,
                *verdict.shadow,
                *(t.match for t in verdict.trial),
                *rejected,
            ]
            rows = FlaggedFingerprint.objects.select_related("hash_list").in_bulk(
                [m.fingerprint_id for m in shown]
            )
            reasons = {pk: row.reason for pk, row in rows.items()}
            hexes = {pk: row.hex for pk, row in rows.items()}
            lists = {pk: row.hash_list.name for pk, row in rows.items()}

            def as_dict(m, lists=lists, hexes=hexes, reasons=reasons):
                return {
                    "id": m.fingerprint_id,
                    "list": lists.get(m.fingerprint_id, ""),
                    "dhash": hexes.get(m.fingerprint_id, ""),
                    "distance": m.distance,
                    "reason": reasons.get(m.fingerprint_id, ""),
                    "variant": m.variant_name,
                    "found_by": m.found_by_kind,
                    "confirm_distance": m.confirm_distance,
                    "low_information": m.low_information,
                    "inliers": inliers_of(m),
                }

            def inliers_of(m, compared=verifier.compared):
                result = compared.get(m.fingerprint_id)
                return None if result is None or not result.verifiable else result.inliers

            if as_json:
                self.stdout.write(
                    _dumps(
                        {
                            "path": str(path),
                            "dhash": fp.hex,
                            "phash": None if fp.phash is None else f"{fp.phash:016x}",
                            "information": fp.information,
                            "decision": verdict.decision,
                            "matches": [as_dict(m) for m in matches],
                            "near": [as_dict(m) for m in verdict.near],
                            "shadow": [as_dict(m) for m in verdict.shadow],
                            "rejected": [as_dict(m) for m in rejected],
                            "trial": [
                                {
                                    **as_dict(t.match),
                                    "outcome": t.outcome,
                                    "proposed_distance": t.match.proposed_distance,
                                    "enforced_distance": t.enforced_distance,
                                }
                                for t in verdict.trial
                            ],
                        }
                    )
                )
            else:
                style = self.style.ERROR if verdict.blocked else self.style.SUCCESS
                if verdict.decision == matching.REVIEW:
                    style = self.style.WARNING
                self.stdout.write(f"{path}  {fp.hex}  {style(verdict.decision)}")
                for kind, shown_matches in (
                    ("", matches),
                    ("near miss, ", verdict.near),
                    ("shadow, ", verdict.shadow),
                    ("not this picture (verification), ", rejected),
                ):
                    for m in shown_matches:
                        fid = m.fingerprint_id
                        confirm = "-" if m.confirm_distance is None else m.confirm_distance
                        low = "  [low-information]" if m.low_information else ""
                        self.stdout.write(
                            f"    #{fid} {hexes.get(fid, '')} distance {m.distance}  "
                            f"{reasons.get(fid, '')}  ({kind}list {lists.get(fid, '')}, "
                            f"{m.variant_name}, pHash distance {confirm}"
                            f"{_inliers_note(inliers_of(m))}){low}"
                        )
                for t in verdict.trial:
                    fid = t.match.fingerprint_id
                    self.stdout.write(
                        f"    #{fid} {hexes.get(fid, '')} distance {t.match.distance}  "
                        f"(trial, list {lists.get(fid, '')}: would be {t.outcome}ed at proposed "
                        f"distance {t.match.proposed_distance}, enforced "
                        f"{t.enforced_distance})"
                    )
        if read == 0:
            raise CommandError("No image could be read.")


def _inliers_note(inliers: int | None) -> str:
    return "" if inliers is None else f", {inliers} verified keypoint pairs"


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)
