"""Load an exchange file (``moderation.exchange``) into the banned set.

For a list received from a partner site, or a banned set moved from another deployment.
Idempotent: an image whose upright dHash is already actively banned is skipped, so running
the same file twice changes nothing. All or nothing: a malformed record stops the import
before anything is written. Matching photos already on the site are swept after commit.
"""

from dataclasses import replace

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from moderation import exchange
from moderation.management.progress import above, add_progress_argument, progress_bar
from moderation.models import HashList


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
        parser.add_argument(
            "--mode",
            choices=HashList.Mode.values,
            default=None,
            help="The mode of a list the import creates (default: the file's). A list that "
            "already exists keeps its own.",
        )
        add_progress_argument(parser)

    def handle(self, *args, file, format, dry_run, mode, **options):
        fmt = format or exchange.guess_format(file)
        try:
            with open(file, encoding="utf-8", newline="") as source:
                records = list(exchange.read(source, fmt))
            if mode is not None:
                records = [replace(r, list_mode=mode) for r in records]
        except OSError as e:
            raise CommandError(f"Could not read {file}: {e}") from e
        except ValueError as e:
            raise CommandError(f"{file}: {e}") from e
        added = skipped = 0
        bare_enforced = 0  # records added without a signal into a list that enforces
        # An existing list keeps its settings; a new one gets the record's.
        enforces = {
            name: enabled and list_mode == HashList.Mode.ENFORCE
            for name, enabled, list_mode in HashList.objects.values_list("name", "enabled", "mode")
        }
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
                        new_list_enforces = (
                            record.list_enabled and record.list_mode == HashList.Mode.ENFORCE
                        )
                        if not record.verification and enforces.get(record.list, new_list_enforces):
                            bare_enforced += 1
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
        if bare_enforced:
            self._warn_of_rule_alone(bare_enforced, dry_run=dry_run)

    def _warn_of_rule_alone(self, bare_enforced: int, *, dry_run: bool) -> None:
        """Flags without a verification signal refuse uploads on the hash rule alone, which
        collides with ordinary photos at scale (docs/matching.md): say what the site's whole
        set of them would refuse, and how to trial them instead."""
        total = exchange.unverified_enforced_flags() + (bare_enforced if dry_run else 0)
        share = exchange.share_refused_by_rule_alone(total)
        if share < exchange.WARN_AT_SHARE:
            return
        self.stderr.write(
            self.style.WARNING(
                f"{bare_enforced} of these fingerprints carry no verification signal and go "
                f"into an enforcing list. With them, {total} enforced flags would decide "
                f"uploads on the dHash + pHash rule alone, which matched innocent photos at "
                f"{exchange.RULE_ALONE_PAIR_RATE:.1e} per (upload, flag) pair on the test "
                f"corpus (docs/matching.md): about {share:.1%} of ordinary uploads refused. Import "
                f"them with --mode shadow, or switch their list to shadow in the admin, and "
                f"read its shadow matches before enforcing it."
            )
        )
