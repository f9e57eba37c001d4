"""Delete the private copies of taken-down photos, and empty the thumbnails refusals keep of
the refused picture, whose keep period is over.

With the database task backend each takedown queues its own purge for the end of its keep
period (``MODERATION_TAKEDOWN_KEEP_DAYS``); a site on the immediate backend, or an operator
catching up, runs this from cron (daily is plenty). Safe to run any number of times, from any
number of hosts: each copy is claimed before it is deleted. Copies and thumbnails under an open
appeal, and a flag's own original, are kept.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from moderation.models import Notice
from moderation.notices import (
    keep_period,
    purge_kept_takedowns,
    purge_refusal_thumbnails,
    refusal_thumbnails_due,
)


class Command(BaseCommand):
    help = (
        "Delete kept copies of taken-down photos, and empty refusals' thumbnails, older than "
        "MODERATION_TAKEDOWN_KEEP_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only say how many copies and thumbnails are due.",
        )

    def handle(self, *args, dry_run: bool = False, verbosity: int = 1, **options):
        if dry_run:
            before = timezone.now() - keep_period()
            due = Notice.objects.purgeable(before).count()
            self.stdout.write(f"{due} kept cop{'y is' if due == 1 else 'ies are'} due (dry run).")
            due = refusal_thumbnails_due(before).count()
            self.stdout.write(
                f"{due} refusal thumbnail{' is' if due == 1 else 's are'} due (dry run)."
            )
            return
        purged = purge_kept_takedowns()
        emptied = purge_refusal_thumbnails()
        if verbosity:
            self.stdout.write(
                self.style.SUCCESS(f"Purged {purged} kept cop{'y' if purged == 1 else 'ies'}.")
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Emptied {emptied} refusal thumbnail{'' if emptied == 1 else 's'}."
                )
            )
