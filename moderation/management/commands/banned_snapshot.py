"""Write this host's snapshot of the banned set, which every process of the host then maps.

Run it at deploy on each host, before the web and task workers start, so that none of them
has to load the set from the database (``moderation.banned_snapshot``). From the current
snapshot plus the change log after it when there is one (seconds), else from the database. It
waits for a process of the host that is writing one (one builder per host). Prints what it did.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from moderation import banned_set


class Command(BaseCommand):
    help = (
        "Write the banned set's snapshot in MODERATION_SNAPSHOT_DIR (from the current one and "
        "the change log after it, else from the database); the host's processes map it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Write a new snapshot even when the current one is up to date.",
        )

    def handle(self, *args, force: bool, **options):
        store = banned_set.snapshot_store()
        if store is None:
            raise CommandError("MODERATION_SNAPSHOT_DIR is empty: snapshots are turned off.")
        started = time.monotonic()
        try:
            snapshot, done = banned_set.rebuild_snapshot(store, blocking=True, force=force)
        except OSError as e:
            raise CommandError(f"cannot write the snapshot in {store.root}: {e}") from e
        assert snapshot is not None  # blocking: the lock was taken
        self.stdout.write(
            f"{done} in {time.monotonic() - started:.2f} s: {snapshot.path}, "
            f"{snapshot.entries} entries, change id {snapshot.change_id}"
        )
