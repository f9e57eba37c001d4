"""Fingerprint image files into the banned set (the seed tutorial's ``index.py``, grown up).

For operators loading a known-bad collection: files or folders (recursive), one line per
file, duplicates skipped, unreadable files reported without stopping the run. The exit
status is non-zero only when no file could be read at all.

Near-flat images (fog, sky, a plain wall) carry too little information to be matched without
also blocking innocent photos; they are reported and skipped unless ``--force`` (the operator
has shell access, which is a superuser's power), and a match with one flagged anyway never
blocks an upload on its own.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from moderation import flagging
from moderation.management.commands._files import iter_image_paths
from moderation.management.progress import above, add_progress_argument, progress_bar
from moderation.models import FlaggedFingerprint


class Command(BaseCommand):
    help = (
        "Fingerprint image files (or folders, recursively) into the banned set, one line per "
        "file; unreadable files are reported and skipped, and the command fails only if none "
        "could be read."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "paths",
            nargs="+",
            metavar="PATH",
            help="Image files, or folders searched recursively (hidden entries are skipped).",
        )
        parser.add_argument(
            "--reason",
            required=True,
            help="Why these images are banned; stored with each fingerprint and in the audit.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Flag low-information (near-flat) images too, instead of skipping them.",
        )
        parser.add_argument(
            "--no-keep-originals",
            action="store_true",
            help="Store only fingerprints, not private copies of the files.",
        )
        add_progress_argument(parser)

    def handle(self, *args, paths, reason, no_keep_originals, force, **options):
        verbosity = options["verbosity"]
        flagged = duplicates = bad = low_information = 0
        files = list(iter_image_paths(paths))
        with progress_bar(self, total=len(files), desc="flag", unit="file", options=options) as bar:
            for path in files:
                line, outcome = self._flag(
                    path, reason=reason, keep=not no_keep_originals, force=force
                )
                bar.update(1)
                if outcome not in ("flagged", "duplicate"):
                    bad += 1
                    low_information += outcome == "low_information"
                    with above(bar):
                        self.stderr.write(line)
                    continue
                flagged += outcome == "flagged"
                duplicates += outcome == "duplicate"
                if verbosity >= 1:
                    with above(bar):
                        self.stdout.write(f"{path}: {line}")
        if flagged + duplicates == 0:
            if low_information and low_information == bad:
                raise CommandError(
                    f"Nothing flagged: all {bad} image(s) carry too little information to ban "
                    "safely (near-flat pictures collide with each other); --force flags them."
                )
            raise CommandError(f"No image could be read ({bad} file(s) skipped).")
        if verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Flagged {flagged} new, {duplicates} already banned, {bad} skipped."
                )
            )

    def _flag(self, path, *, reason: str, keep: bool, force: bool) -> tuple[str, str]:
        """What to print about one file, and what happened: flagged, duplicate, or why it was
        skipped (the refusal's code, or unreadable)."""
        try:
            with path.open("rb") as fh:
                result = flagging.flag_image(
                    file=fh,
                    reason=reason,
                    source=FlaggedFingerprint.Source.COMMAND,
                    keep_original=keep,
                    allow_low_information=force,
                )
        except ValidationError as e:
            hint = " (--force flags it anyway)" if e.code == "low_information" else ""
            return f"{path}: skipped: {' '.join(e.messages)}{hint}", e.code or "invalid"
        except OSError as e:
            return f"{path}: skipped: {e.strerror or e}", "unreadable"
        if result.created:
            return f"flagged {result.fingerprint.hex}", "flagged"
        return f"already banned as {result.fingerprint.hex}", "duplicate"
