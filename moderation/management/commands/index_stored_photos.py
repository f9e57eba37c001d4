"""``manage.py index_stored_photos``: add the stored images that predate the index of their
hashes (``stored_backfill.backfill``), or ``--prune`` the rows no image holds any more."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from moderation import registry, stored_backfill


class Command(BaseCommand):
    help = (
        "Index the hashes of stored images that predate the index (resumable, batched, from "
        "the stored hash columns: nothing is decoded), so flag sweeps stop reading every "
        "stored image; or --prune rows of images replaced or removed since."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument(
            "--prune", action="store_true", help="delete rows no stored image holds any more"
        )

    def handle(self, *args, batch_size: int, prune: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        for target in registry.targets():
            if prune:
                deleted = stored_backfill.prune(target, batch_size=batch_size)
                self.stdout.write(f"{target.key}: {deleted} stale rows deleted")
                continue

            def progress(done: int, last_pk, key=target.key) -> None:
                self.stdout.write(f"{key}: {done} images indexed (up to pk {last_pk})")

            done = stored_backfill.backfill(target, batch_size=batch_size, progress=progress)
            self.stdout.write(f"{target.key}: complete ({done} images indexed by this run)")
