"""Load an exchange file (``moderation.exchange``) into the banned set.

For a list received from a partner site, or a banned set moved from another deployment.
Idempotent: an image whose upright dHash is already actively banned is skipped, so running
the same file twice changes nothing. All or nothing: a malformed record stops the import
before anything is written. Matching photos already on the site are swept after commit.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from moderation import exchange
from moderation.management.progress import above, add_progress_argument, progress_bar


class Command(BaseCommand):
    help = (
        "Import banned fingerprints from an export_fingerprints file (CSV or JSON lines); "
        "already banned images are skipped. --dry-run reports without writing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE")
        parser.add_argument(
            "--format",
            choices=exchange.FORMATS,
            default=None,
            help="Default: csv for a .csv file, jsonl otherwise.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report, write nothing.")
        add_progress_argument(parser)

    def handle(self, *args, file, format, dry_run, **options):
        fmt = format or exchange.guess_format(file)
        try:
            with open(file, encoding="utf-8", newline="") as source:
                records = list(exchange.read(source, fmt))
        except OSError as e:
            raise CommandError(f"Could not read {file}: {e}") from e
        except ValueError as e:
            raise CommandError(f"{file}: {e}") from e
        added = skipped = 0
        try:
            with (
                progress_bar(
                    self, total=len(records), desc="import", unit="record", options=options
                ) as bar,
                transaction.atomic(),
            ):
                for record in records:
                    if exchange.import_fingerprint(record=record, dry_run=dry_run):
                        added += 1
                    else:
                        skipped += 1
                    bar.update(1)
                    if options["verbosity"] >= 2:
                        with above(bar):
                            self.stdout.write(f"{record.dhash} {record.list}")
        except (ValidationError, ValueError) as e:
            message = " ".join(e.messages) if isinstance(e, ValidationError) else str(e)
            raise CommandError(f"{file}: {message}; nothing was imported.") from e
        verb = "Would import" if dry_run else "Imported"
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {added} fingerprints; {skipped} already banned.")
        )
