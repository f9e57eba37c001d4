"""Re-fingerprint every stored image with the current pipeline, then sweep.

Run after upgrading the hashing pipeline (``PIPELINE_VERSION``), after restoring media from a
backup, or whenever stored fingerprints may not match the stored files. Work is committed one
batch at a time together with the position reached, so the command can be interrupted (Ctrl-C,
a deploy, a crash) and simply run again: it resumes where it stopped. ``--restart`` starts over.
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from moderation import services


class Command(BaseCommand):
    help = "Re-fingerprint stored profile photos and flagged originals, in resumable batches."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would change; write nothing."
        )
        parser.add_argument(
            "--restart", action="store_true", help="Abandon an unfinished run and start over."
        )
        parser.add_argument(
            "--no-sweep", action="store_true", help="Do not sweep when the reindex finishes."
        )

    def handle(self, *args, batch_size, dry_run, restart, no_sweep, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        verbosity = options["verbosity"]
        run = None if dry_run else services.reindex_open_run(restart=restart)
        if run is not None and run.cursors and verbosity >= 1:
            self.stdout.write(f"Resuming the reindex started {run.started_at:%Y-%m-%d %H:%M}.")
        totals = {"processed": 0, "changed": 0}
        missing: list[str] = []
        unreadable: list[str] = []
        for key in services.reindex_keys():
            after = 0
            while True:
                result = services.reindex_batch(run=run, key=key, batch_size=batch_size, after=after)
                if result.done:
                    break
                totals["processed"] += result.processed
                totals["changed"] += result.changed
                missing += result.missing
                unreadable += result.unreadable
                if run is None:
                    after = result.last_pk
                self._progress(key, totals, verbosity)
        if self.stdout.isatty():
            self.stdout.write("")
        for line in missing:
            self.stderr.write(f"missing file: {line}")
        for line in unreadable:
            self.stderr.write(f"unreadable: {line}")
        summary = (
            f"{totals['processed']} image(s) re-fingerprinted, {totals['changed']} changed, "
            f"{len(missing)} missing, {len(unreadable)} unreadable"
        )
        if run is None:
            self.stdout.write(self.style.SUCCESS(f"Dry run: {summary}. Nothing was written."))
            return
        sweep = services.reindex_finish(run=run, sweep=not no_sweep)
        if sweep is None:
            self.stdout.write(self.style.SUCCESS(f"{summary}. Sweep skipped."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary}. Sweep checked {sweep.checked} photo(s), took down {len(sweep.taken_down)}."
            )
        )

    def _progress(self, key: str, totals: dict, verbosity: int) -> None:
        line = f"{key}: {totals['processed']} processed, {totals['changed']} changed"
        if self.stdout.isatty():
            sys.stdout.write("\r" + line)
            sys.stdout.flush()
        elif verbosity >= 2:
            self.stdout.write(line)
