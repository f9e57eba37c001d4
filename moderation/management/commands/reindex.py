"""Re-fingerprint every stored image with the current pipeline, then sweep.

Run after upgrading the hashing pipeline (``PIPELINE_VERSION``), after restoring media from a
backup, or whenever stored fingerprints may not match the stored files. Work is committed one
batch at a time together with the position reached, so the command can be interrupted (Ctrl-C,
a deploy, a crash) and simply run again: it resumes where it stopped, and the summary counts the
whole run, not just the part since the last interruption. ``--restart`` starts over.
"""

from django.core.management.base import BaseCommand, CommandError

from moderation import reindex
from moderation.background import enqueue_now


class Command(BaseCommand):
    help = (
        "Re-fingerprint every stored profile photo and every kept flagged original with the "
        "current pipeline, one committed batch at a time (interrupt and run again to resume), "
        "then take down stored photos that now match the banned set."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=200,
            help="Images re-fingerprinted per batch; each batch is one commit (default: 200).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would change; write nothing."
        )
        parser.add_argument(
            "--restart", action="store_true", help="Abandon an unfinished run and start over."
        )
        parser.add_argument(
            "--no-sweep", action="store_true", help="Do not sweep when the reindex finishes."
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help=(
                "Enqueue the reindex as a task and return at once; the task worker "
                "(manage.py run_worker, MODERATION_TASKS_BACKEND=database) runs it in parts."
            ),
        )

    def handle(self, *args, batch_size, dry_run, restart, no_sweep, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["background"]:
            sweep = not no_sweep
            self._enqueue(batch_size=batch_size, dry_run=dry_run, restart=restart, sweep=sweep)
            return
        self.verbosity = options["verbosity"]
        self._progress_open = False
        run = None if dry_run else reindex.reindex_open_run(restart=restart)
        if run is not None and run.cursors and self.verbosity >= 1:
            self.stdout.write(f"Resuming the reindex started {run.started_at:%Y-%m-%d %H:%M}.")
        totals = {"processed": 0, "changed": 0}
        missing: list[str] = []
        unreadable: list[str] = []
        batches = reindex.ReindexBatches(run=run, batch_size=batch_size)
        try:
            done = {"processed": 0, "changed": 0}
            for result in batches:
                if result.done:
                    self._end_progress()
                    done = {"processed": 0, "changed": 0}
                    continue
                for counts in (totals, done):
                    counts["processed"] += result.processed
                    counts["changed"] += result.changed
                missing += result.missing
                unreadable += result.unreadable
                self._progress(
                    f"{result.key}: {done['processed']} processed, {done['changed']} changed"
                )
        except (Exception, KeyboardInterrupt) as e:
            # Ctrl-C included: say what was kept instead of dumping a traceback.
            self._end_progress()
            self._report_problems(missing, unreadable)
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
            returncode = 130 if isinstance(e, KeyboardInterrupt) else 1
            if run is None:
                raise CommandError(
                    f"Dry run stopped at {batches.key}: {why}", returncode=returncode
                ) from e
            raise CommandError(
                f"Reindex stopped at {batches.key}: {why}. Finished batches are saved; "
                "run the command again to resume.",
                returncode=returncode,
            ) from e
        self._report_problems(missing, unreadable)

        if run is None:
            summary = _summary(
                totals["processed"], totals["changed"], len(missing), len(unreadable)
            )
            if self.verbosity >= 1:
                self.stdout.write(self.style.SUCCESS(f"Dry run: {summary}. Nothing was written."))
            return

        # A resumed run's counts include the batches committed before the interruption.
        counts = run.counts
        summary = _summary(
            counts.get("processed", 0),
            counts.get("changed", 0),
            counts.get("missing", 0),
            counts.get("unreadable", 0),
        )
        try:
            sweep = reindex.reindex_finish(run=run, sweep=not no_sweep)
        except Exception as e:
            raise CommandError(
                f"{summary}, but the sweep failed: {e}. Run the command again to sweep again "
                "(finished batches are not re-read)."
            ) from e
        if self.verbosity < 1:
            return
        if sweep is None:
            self.stdout.write(self.style.SUCCESS(f"{summary}. Sweep skipped."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary}. Sweep checked {sweep.checked} photo(s), "
                f"took down {len(sweep.taken_down)}."
            )
        )

    def _progress(self, line: str) -> None:
        """One line per batch: rewritten in place on a terminal, printed at verbosity 2 else."""
        if self.verbosity < 1:
            return
        if self.stdout.isatty():
            self.stdout.write("\r" + line, ending="")
            self.stdout.flush()
            self._progress_open = True
        elif self.verbosity >= 2:
            self.stdout.write(line)

    def _end_progress(self) -> None:
        if self._progress_open:
            self.stdout.write("")
            self._progress_open = False

    def _report_problems(self, missing: list[str], unreadable: list[str]) -> None:
        for line in missing:
            self.stderr.write(f"missing file: {line}")
        for line in unreadable:
            self.stderr.write(f"unreadable: {line}")

    def _enqueue(self, *, batch_size: int, dry_run: bool, restart: bool, sweep: bool) -> None:
        """Open (or resume) the run here, and leave the batches and the sweep to the worker."""
        from django.tasks.backends.immediate import ImmediateBackend

        if dry_run:
            raise CommandError("--dry-run cannot run in the background.")
        run = reindex.reindex_open_run(restart=restart)
        result = enqueue_now(reindex.reindex_task, run.pk, batch_size=batch_size, sweep=sweep)
        if isinstance(reindex.reindex_task.get_backend(), ImmediateBackend):
            if result.errors:
                raise CommandError(
                    f"Reindex run #{run.pk} failed: {result.errors[-1].traceback.splitlines()[-1]}"
                )
            self.stdout.write(
                f"Tasks run immediately here (MODERATION_TASKS_BACKEND=immediate), so reindex "
                f"run #{run.pk} ran in this process: {result.return_value}"
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Reindex run #{run.pk} enqueued as task {result.id}; the task worker "
                "(manage.py run_worker) runs it."
            )
        )


def _summary(processed: int, changed: int, missing: int, unreadable: int) -> str:
    read = processed - missing - unreadable
    return (
        f"Re-fingerprinted {read} of {processed} image(s): {changed} changed, "
        f"{missing} missing, {unreadable} unreadable"
    )
