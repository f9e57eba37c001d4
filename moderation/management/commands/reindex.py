"""Re-fingerprint every stored image with the current pipeline, then sweep.

Run after upgrading the hashing pipeline (``PIPELINE_VERSION``), after restoring media from a
backup, or whenever stored fingerprints may not match the stored files. The run is cut into
ranges (``moderation.reindex``); in the foreground this command works through them itself, one
committed batch at a time, so it can be interrupted (Ctrl-C, a deploy, a crash) and simply run
again: it resumes where it stopped, and the summary counts the whole run. ``--background``
enqueues one task per range for any number of task workers; ``--status`` shows how far the
current run is, with its rate and time left. ``--restart`` starts over.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from moderation import full_sweep, reindex
from moderation.management.progress import add_progress_argument, progress_bar
from moderation.models import ReindexRun
from moderation.work_ranges import start_attempt


class Command(BaseCommand):
    help = (
        "Re-fingerprint every stored profile photo and every kept flagged original with the "
        "current pipeline, in ranges of committed batches (interrupt and run again to resume; "
        "--background hands the ranges to the task workers), then take down stored photos "
        "that now match the banned set."
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
                "Enqueue one task per range and return at once; the task workers "
                "(manage.py run_worker, MODERATION_TASKS_BACKEND=database) run them. With a run "
                "already open, only say how far it is."
            ),
        )
        parser.add_argument(
            "--requeue",
            action="store_true",
            help=(
                "With --background: enqueue the open run's unfinished ranges again (after "
                "tasks were lost; a range already queued or running is not done twice)."
            ),
        )
        parser.add_argument(
            "--status",
            action="store_true",
            help="Show the current run's ranges and rows done, rate and time left; change nothing.",
        )
        add_progress_argument(parser)

    def handle(self, *args, batch_size, dry_run, restart, no_sweep, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.verbosity = options["verbosity"]
        if options["status"]:
            self._status()
            return
        if options["requeue"] and not options["background"]:
            raise CommandError("--requeue goes with --background.")
        if options["background"]:
            sweep = not no_sweep
            self._enqueue(
                batch_size=batch_size,
                dry_run=dry_run,
                restart=restart,
                sweep=sweep,
                requeue=options["requeue"],
            )
            return
        self.options = options
        self._bars = {}
        if dry_run:
            self._dry_run(batch_size)
            return
        run, created = reindex.reindex_open_run(
            restart=restart, sweep=not no_sweep, batch_size=batch_size
        )
        if not created and self.verbosity >= 1:
            self.stdout.write(f"Resuming the reindex started {run.started_at:%Y-%m-%d %H:%M}.")
        self._foreground(run, batch_size)

    # --- the foreground --------------------------------------------------------------------

    def _foreground(self, run: ReindexRun, batch_size: int) -> None:
        missing: list[str] = []
        unreadable: list[str] = []
        reindex.start(run, enqueue=False)
        run.refresh_from_db()
        phase = "reindex"
        try:
            while run.phase == ReindexRun.Phase.REINDEXING:
                for work in reindex.open_ranges(run):
                    if start_attempt(work.pk) is None:
                        continue  # a worker finished it meanwhile
                    for result in reindex.work_reindex_range(work, batch_size=batch_size):
                        missing += result.missing
                        unreadable += result.unreadable
                        self._progress("reindex", reindex.reindex_progress(run))
                    reindex.finish_range(work, enqueue=False)
                    self._progress("reindex", reindex.reindex_progress(run), force=True)
                run.refresh_from_db()
                if run.phase == ReindexRun.Phase.REINDEXING and not reindex.open_ranges(run):
                    break  # every range is finished by a worker that has not committed yet
            self._end_progress()
            self._report_problems(missing, unreadable)
            missing = unreadable = []
            phase = "sweep"
            while run.phase == ReindexRun.Phase.SWEEPING:
                for work in reindex.open_ranges(run):
                    if start_attempt(work.pk) is None:
                        continue
                    full_sweep.mark_running(work.sweep_id)
                    for _ in full_sweep.work_sweep_range(work, batch_size=batch_size):
                        self._progress("sweep", reindex.sweep_progress(run))
                    reindex.finish_range(work, enqueue=False)
                    self._progress("sweep", reindex.sweep_progress(run), force=True)
                run.refresh_from_db()
                if run.phase == ReindexRun.Phase.SWEEPING and not reindex.open_ranges(run):
                    break
        except (Exception, KeyboardInterrupt) as e:
            # Ctrl-C included: say what was kept instead of dumping a traceback.
            self._end_progress()
            self._report_problems(missing, unreadable)
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
            returncode = 130 if isinstance(e, KeyboardInterrupt) else 1
            if phase == "sweep":
                raise CommandError(
                    f"{_summary(reindex.totals(run))}, but the sweep stopped: {why}. Run the "
                    "command again to sweep on (finished batches are not re-read).",
                    returncode=returncode,
                ) from e
            raise CommandError(
                f"Reindex stopped: {why}. Finished batches are saved; "
                "run the command again to resume.",
                returncode=returncode,
            ) from e
        self._end_progress()
        run.refresh_from_db()
        summary = _summary(reindex.totals(run))
        if self.verbosity < 1:
            return
        if run.phase != ReindexRun.Phase.DONE:
            self.stdout.write(
                f"{summary}. The last ranges are being finished by the task workers "
                "(reindex --status)."
            )
            return
        if not run.sweep_after:
            self.stdout.write(self.style.SUCCESS(f"{summary}. Sweep skipped."))
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary}. Sweep checked {run.counts.get('swept', 0)} photo(s), "
                f"took down {run.counts.get('taken_down', 0)}."
            )
        )

    def _dry_run(self, batch_size: int) -> None:
        counts = dict.fromkeys(reindex.COUNTS, 0)
        missing: list[str] = []
        unreadable: list[str] = []
        batches = reindex.ReindexBatches(batch_size=batch_size)
        try:
            for result in batches:
                counts["processed"] += result.processed
                counts["changed"] += result.changed
                missing += result.missing
                unreadable += result.unreadable
        except (Exception, KeyboardInterrupt) as e:
            self._report_problems(missing, unreadable)
            why = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
            returncode = 130 if isinstance(e, KeyboardInterrupt) else 1
            raise CommandError(
                f"Dry run stopped at {batches.key}: {why}", returncode=returncode
            ) from e
        self._report_problems(missing, unreadable)
        counts.update(missing=len(missing), unreadable=len(unreadable))
        if self.verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(f"Dry run: {_summary(counts)}. Nothing was written.")
            )

    def _progress(self, phase: str, progress, *, force: bool = False) -> None:
        """Rows done of the whole run (every worker's), with ranges, rate and time left: a bar
        on stderr (see ``moderation.management.progress``), or at verbosity 2 without one a
        line per batch and per finished range on stdout, for logs."""
        if self.verbosity < 1 or progress is None:
            return
        bar = self._bars.get(phase)
        if bar is None:
            bar = progress_bar(
                self, total=progress.rows_total, desc=phase, unit="row", options=self.options
            )
            self._bars[phase] = bar
        if bar.disable:
            if self.verbosity >= 2:
                self.stdout.write(f"{phase}: {progress.line()}")
            return
        bar.set_postfix_str(f"{progress.ranges_done}/{progress.ranges_total} ranges", refresh=False)
        bar.update(progress.rows_done - bar.n)
        if force:
            bar.refresh()

    def _end_progress(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars = {}

    def _report_problems(self, missing: list[str], unreadable: list[str]) -> None:
        for line in missing:
            self.stderr.write(f"missing file: {line}")
        for line in unreadable:
            self.stderr.write(f"unreadable: {line}")

    # --- status and background -------------------------------------------------------------

    def _status(self) -> None:
        run = reindex.current_run()
        if run is None:
            self.stdout.write("No reindex has run yet.")
            return
        self.stdout.write(status_lines(run))

    def _enqueue(
        self, *, batch_size: int, dry_run: bool, restart: bool, sweep: bool, requeue: bool
    ) -> None:
        """Open the run (with its ranges) here and enqueue one task per range; with a run
        already open, say how far it is and enqueue nothing (unless ``requeue``)."""
        from django.tasks.backends.immediate import ImmediateBackend

        if dry_run:
            raise CommandError("--dry-run cannot run in the background.")
        run, created = reindex.reindex_open_run(restart=restart, sweep=sweep, batch_size=batch_size)
        immediate = isinstance(reindex.reindex_range_task.get_backend(), ImmediateBackend)
        if not created and not requeue:
            self.stdout.write(
                f"Reindex run #{run.pk} is already open; nothing was enqueued "
                "(--requeue enqueues its unfinished ranges again).\n" + status_lines(run)
            )
            return
        try:
            queued = reindex.enqueue_ranges(run)
            reindex.start(run, enqueue=True)
        except Exception as e:
            if not immediate:
                raise
            raise CommandError(f"Reindex run #{run.pk} failed: {e}") from e
        run.refresh_from_db()
        if immediate:
            self.stdout.write(
                "Tasks run immediately here (MODERATION_TASKS_BACKEND=immediate), so reindex "
                f"run #{run.pk} ran in this process: {_summary(reindex.totals(run))}"
                f"{'' if run.finished_at else ' (not finished)'}."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Reindex run #{run.pk}: {queued} range task(s) enqueued; the task workers "
                "(manage.py run_worker) run them. Follow it with: manage.py reindex --status"
            )
        )


def status_lines(run: ReindexRun) -> str:
    """What ``--status`` prints about a run."""
    head = f"Reindex run #{run.pk}, started {run.started_at:%Y-%m-%d %H:%M}: "
    if run.finished_at is not None:
        if run.counts.get("abandoned"):
            return head + "abandoned (--restart)."
        swept = (
            f"; sweep checked {run.counts.get('swept', 0)}, took down "
            f"{run.counts.get('taken_down', 0)}"
            if run.sweep_after
            else "; not swept"
        )
        return head + f"finished {run.finished_at:%Y-%m-%d %H:%M}. {_summary(run.counts)}{swept}."
    lines = [head + run.get_phase_display() + "."]
    lines.append(f"  reindex: {reindex.reindex_progress(run).line()}")
    sweep = reindex.sweep_progress(run)
    if sweep is not None:
        lines.append(f"  sweep:   {sweep.line()}")
    failed = list(
        run.ranges.filter(done=False).exclude(last_error="").values_list("pk", "last_error")[:5]
    )
    for pk, error in failed:
        lines.append(f"  range #{pk} failed: {error}")
    return "\n".join(lines)


def _summary(counts: dict) -> str:
    processed = counts.get("processed", 0)
    missing, unreadable = counts.get("missing", 0), counts.get("unreadable", 0)
    return (
        f"Re-fingerprinted {processed - missing - unreadable} of {processed} image(s): "
        f"{counts.get('changed', 0)} changed, {missing} missing, {unreadable} unreadable"
    )
