"""Look image files up in the banned set (the seed tutorial's ``search.py``, grown up).

Prints each file's dHash, the decision an upload of it would get (``block`` or ``pass``), and
the banned fingerprints it is near, nearest first. ``--json`` prints one object per line for
scripts. Read-only: it never changes the banned set.
"""

import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from moderation import matching
from moderation.hashing import fingerprint
from moderation.management.commands._files import iter_image_paths
from moderation.models import FlaggedFingerprint


class Command(BaseCommand):
    help = (
        "Show each image's dHash, whether an upload of it would be blocked or pass, and the "
        "banned fingerprints it matches, nearest first. Read-only."
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
            help='One JSON object per line: {"path", "dhash", "decision", "matches": [{"id", '
            '"dhash", "distance", "reason"}]}, or {"path", "error"} for an unreadable file.',
        )
        parser.add_argument(
            "--max-distance",
            type=int,
            default=None,
            help="Override MODERATION_MAX_DISTANCE for this lookup (bits, <=).",
        )

    def handle(self, *args, paths, as_json: bool, max_distance, **options):
        distance = settings.MODERATION_MAX_DISTANCE if max_distance is None else max_distance
        if not 0 <= distance <= 64:
            raise CommandError("--max-distance must be between 0 and 64.")
        read = 0
        for path in iter_image_paths(paths):
            try:
                with path.open("rb") as fh:
                    fp = fingerprint(fh)
            except (ValidationError, OSError) as e:
                message = " ".join(e.messages) if isinstance(e, ValidationError) else str(e)
                if as_json:
                    self.stdout.write(_dumps({"path": str(path), "error": message}))
                else:
                    self.stderr.write(f"{path}: error: {message}")
                continue
            read += 1
            matches = matching.find(fp, distance)
            rows = FlaggedFingerprint.objects.in_bulk([m.fingerprint_id for m in matches])
            reasons = {pk: row.reason for pk, row in rows.items()}
            hexes = {pk: row.hex for pk, row in rows.items()}
            decision = "block" if matches else "pass"
            if as_json:
                self.stdout.write(
                    _dumps(
                        {
                            "path": str(path),
                            "dhash": fp.hex,
                            "decision": decision,
                            "matches": [
                                {
                                    "id": m.fingerprint_id,
                                    "dhash": hexes.get(m.fingerprint_id, ""),
                                    "distance": m.distance,
                                    "reason": reasons.get(m.fingerprint_id, ""),
                                }
                                for m in matches
                            ],
                        }
                    )
                )
            else:
                style = self.style.ERROR if matches else self.style.SUCCESS
                self.stdout.write(f"{path}  {fp.hex}  {style(decision)}")
                for m in matches:
                    fid = m.fingerprint_id
                    self.stdout.write(
                        f"    #{fid} {hexes.get(fid, '')} distance {m.distance}  "
                        f"{reasons.get(fid, '')}"
                    )
        if read == 0:
            raise CommandError("No image could be read.")


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)
