"""Write this host's snapshots of the banned set and of the hash lists' PDQ entries, which
every process of the host then maps.

Run it at deploy on each host, before the web and task workers start, so that none of them
has to load either set from the database (``moderation.host_snapshot``). Each from its current
snapshot plus the change log after it when there is one (seconds), else from the database. It
waits for a process of the host that is writing one (one builder per host and set). Prints
what it did, one line per set.
"""

import time

from django.core.management.base import BaseCommand, CommandError

from moderation import banned_set, signal_set


class Command(BaseCommand):
    help = (
        "Write the snapshots of the banned set and of the hash lists' PDQ entries in "
        "MODERATION_SNAPSHOT_DIR (from the current ones and the change log after them, else "
        "from the database); the host's processes map them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Write new snapshots even when the current ones are up to date.",
        )

    def handle(self, *args, force: bool, **options):
        for name, module in (("banned set", banned_set), ("PDQ entries", signal_set)):
            store = module.snapshot_store()
            if store is None:
                raise CommandError("MODERATION_SNAPSHOT_DIR is empty: snapshots are turned off.")
            started = time.monotonic()
            try:
                snapshot, done = module.rebuild_snapshot(store, blocking=True, force=force)
            except OSError as e:
                raise CommandError(f"cannot write the snapshot in {store.root}: {e}") from e
            assert snapshot is not None  # blocking: the lock was taken
            self.stdout.write(
                f"{name}: {done} in {time.monotonic() - started:.2f} s: {snapshot.path}, "
                f"{snapshot.entries} entries, change id {snapshot.change_id}"
            )
