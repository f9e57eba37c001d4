"""The production task worker: heartbeats, a lease on running tasks, retries, clean stops.

django-tasks-db's ``db_worker`` claims a task by writing its id into the row and marking it
``RUNNING``; nothing ever looks at that again. A worker killed by the OOM killer, a reboot or
a deploy leaves its task ``RUNNING`` forever (a flag's sweep among them, and so the banned
copies it was to take down stayed up). It has no heartbeat, no lease and no retry: a task
that raised is just ``FAILED``. So this module adds, around the library's own claim and rows:

- **Heartbeat**: every ``run_worker`` process writes ``WorkerHeartbeat.last_seen`` (and the
  task it runs) every ``MODERATION_WORKER_HEARTBEAT_SECONDS`` from a thread with its own
  database connection, so a long task does not stop the beat.
- **Lease**: between tasks every worker looks for ``RUNNING`` rows whose worker (the last id in
  ``worker_ids``) has no heartbeat newer than ``MODERATION_WORKER_LEASE_SECONDS`` (or none at
  all, once the task has run that long: a worker without heartbeats, e.g. a ``db_worker`` left
  over from before) and puts them back to ``READY``: the same row, so links to it stay valid.
  It looks again just after the earliest lease it saw can run out (at least once per
  heartbeat interval), so an idle worker gives a dead worker's task back within the lease of
  its last heartbeat, not a heartbeat interval later.
  Rows are locked (``SELECT ... FOR UPDATE SKIP LOCKED``), so two workers never requeue the
  same task, and the library's claim locks them too, so two never claim it. The tasks are
  idempotent, so running one again is harmless; a worker that was only slow, not dead, finds
  on finishing that the row is no longer its own and discards its result.
- **Retries**: a task that raised goes back to ``READY`` with ``run_after`` backed off
  (``MODERATION_TASK_RETRY_SECONDS``, doubled each time) until it was claimed
  ``MODERATION_TASK_MAX_ATTEMPTS`` times; then it stays ``FAILED`` with its error. The attempts
  are ``len(worker_ids)``: one id per claim, the library's own record. A task whose workers
  keep dying (a poison task) fails the same way instead of killing workers forever.
- **Stopping**: the first SIGTERM/SIGINT lets the current task finish (long tasks run in parts
  of about 30 s) and then exits 0; a second one interrupts the task and gives it back to
  ``READY`` (its claim removed) before exiting 1, instead of abandoning it.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from traceback import format_exception
from types import FrameType
from typing import Any

from django.db import DatabaseError, close_old_connections, connection
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker as LibraryWorker
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from moderation.conf import moderation_settings
from moderation.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

READY, RUNNING, FAILED, SUCCESSFUL = "READY", "RUNNING", "FAILED", "SUCCESSFUL"
MAX_RETRY_DELAY = timedelta(hours=1)
# A dead worker's heartbeat row is kept this long (the dashboard counts it as stale), then
# removed by any live worker.
FORGET_DEAD_AFTER = timedelta(days=1)
# A lease check comes this long after the lease it waits for runs out (the cutoff is ">=").
EXPIRY_MARGIN = 0.05


class AbandonedTask(Exception):
    """Recorded as the error of a task whose workers kept dying while running it."""


class ReleaseTask(BaseException):
    """Raised in the task's code by a second stop signal: give the task back, then exit."""


def default_worker_id() -> str:
    """Host, pid and a random suffix: unique across the pool, readable in the admin."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{get_random_string(6)}"


def retry_delay(attempts: int) -> timedelta:
    """The wait before the next try of a task that raised on its ``attempts``-th claim."""
    base = moderation_settings.TASK_RETRY_SECONDS
    return min(timedelta(seconds=base * 2 ** max(attempts - 1, 0)), MAX_RETRY_DELAY)


def _error_fields(row: DBTaskResult, exc: BaseException) -> None:
    row.exception_class_path = f"{type(exc).__module__}.{type(exc).__qualname__}"
    row.traceback = "".join(format_exception(exc))


@dataclass(frozen=True)
class LeaseCheck:
    """What one look at the running tasks did and saw."""

    # Tasks given back to the queue or failed for good, by id.
    requeued: list[str]
    # The earliest moment the lease of a task still running can run out (its worker's last
    # heartbeat, or its claim when the worker has none, plus the lease); None if none runs.
    next_expiry: datetime | None


def check_leases(*, backend_name: str = "default") -> LeaseCheck:
    """Give back to the queue every running task whose worker's lease ran out; fail for good
    those already claimed ``MODERATION_TASK_MAX_ATTEMPTS`` times; and say when the next lease
    can run out, so the caller looks again then, not a whole heartbeat interval later."""
    now = timezone.now()
    lease = timedelta(seconds=moderation_settings.WORKER_LEASE_SECONDS)
    cutoff = now - lease
    max_attempts = moderation_settings.TASK_MAX_ATTEMPTS
    done: list[str] = []
    expiries: list[datetime] = []
    running = DBTaskResult.objects.filter(status=RUNNING, backend_name=backend_name)
    with exclusive_transaction(running.db):
        rows = list(running.select_for_update(skip_locked=True))
        owners = {row.worker_ids[-1] for row in rows if row.worker_ids}
        seen = dict(
            WorkerHeartbeat.objects.filter(worker_id__in=owners).values_list(
                "worker_id", "last_seen"
            )
        )
        for row in rows:
            owner = row.worker_ids[-1] if row.worker_ids else None
            last = seen.get(owner)
            if last is not None and last >= cutoff:
                expiries.append(last + lease)
                continue  # alive
            if last is None and row.started_at is not None and row.started_at >= cutoff:
                expiries.append(row.started_at + lease)
                continue  # no heartbeat (yet): give it one lease from its claim
            if len(row.worker_ids) >= max_attempts:
                row.status = FAILED
                row.finished_at = now
                _error_fields(
                    row,
                    AbandonedTask(
                        f"worker {owner} stopped (no heartbeat since {last or row.started_at}) "
                        f"during attempt {len(row.worker_ids)} of {max_attempts}"
                    ),
                )
                row.save(
                    update_fields=["status", "finished_at", "exception_class_path", "traceback"]
                )
                logger.error(
                    "task %s (%s) failed for good: its workers kept dying", row.id, row.task_path
                )
            else:
                row.status = READY
                row.save(update_fields=["status"])
                logger.warning(
                    "task %s (%s) given back to the queue: worker %s is gone",
                    row.id,
                    row.task_path,
                    owner,
                )
            done.append(str(row.id))
        WorkerHeartbeat.objects.filter(last_seen__lt=now - FORGET_DEAD_AFTER).delete()
    return LeaseCheck(requeued=done, next_expiry=min(expiries, default=None))


def requeue_abandoned(*, backend_name: str = "default") -> list[str]:
    """``check_leases``' requeued and failed task ids."""
    return check_leases(backend_name=backend_name).requeued


@dataclass
class Health:
    """What the dashboard and the readiness check say about background work."""

    failed_tasks: int
    workers_alive: int
    workers_stale: int


def lease_cutoff():
    """Workers seen since then hold their lease."""
    return timezone.now() - timedelta(seconds=moderation_settings.WORKER_LEASE_SECONDS)


def health() -> Health:
    cutoff = lease_cutoff()
    return Health(
        failed_tasks=DBTaskResult.objects.filter(status=FAILED).count(),
        workers_alive=WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).count(),
        workers_stale=WorkerHeartbeat.objects.filter(last_seen__lt=cutoff).count(),
    )


class Heartbeat(threading.Thread):
    """Writes this worker's ``last_seen`` every heartbeat interval on its own connection (a
    thread's ORM connection is its own), so a long task or a stuck query in the worker's main
    thread does not stop it. A failed write is logged and retried at the next beat."""

    def __init__(self, worker_id: str, interval: float) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self.interval = interval
        self.current_task: str | None = None
        self._stopped = threading.Event()

    def register(self) -> None:
        now = timezone.now()
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "started_at": now,
                "last_seen": now,
                "current_task": None,
            },
        )

    def beat(self) -> None:
        updated = WorkerHeartbeat.objects.filter(worker_id=self.worker_id).update(
            last_seen=timezone.now(), current_task=self.current_task
        )
        if not updated:  # removed (e.g. a day offline): say hello again
            self.register()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - a dead heartbeat thread would lose the lease
                    logger.warning("heartbeat of %s not written", self.worker_id, exc_info=True)
                    connection.close()  # this thread's connection: reconnect at the next beat
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(self.interval + 5)


class Worker(LibraryWorker):
    """The library's worker loop with a heartbeat, the lease, retries and clean stops."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heartbeat = Heartbeat(self.worker_id, moderation_settings.WORKER_HEARTBEAT_SECONDS)
        self._wake = threading.Event()
        self._in_task_code = False
        self._released = False
        self._next_requeue = 0.0

    # --- signals ----------------------------------------------------------------------------

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        name = signal.strsignal(signum)
        if self.running:
            self.running = False
            self._wake.set()
            logger.warning(
                "%s: finishing the current task, then stopping (again to release it)", name
            )
            return
        if self._in_task_code:
            logger.warning("%s again: releasing the current task back to the queue", name)
            raise ReleaseTask(name)

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        logger.info(
            "Starting worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names)
        )
        self._register()
        self.heartbeat.start()
        if self.startup_delay and self.interval:
            self._wake.wait(random.random())  # noqa: S311 - spread a fleet's first polls
        try:
            while self.running:
                try:
                    ran = self._once()
                except DatabaseError as e:
                    if not is_locked_database_exception(e):
                        logger.warning("database error in the worker loop; retrying", exc_info=True)
                    connection.close()
                    ran = None
                if ran is False and self.batch:
                    return
                if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                    return
                if self.running and not ran:
                    # Idle: poll again after the interval, or sooner for a lease check (not
                    # after a database error: then the interval, or it would spin).
                    until_check = max(self._next_requeue - time.monotonic(), 0.0)
                    wait = self.interval if ran is None else min(self.interval, until_check)
                    self._wake.wait(wait)
        finally:
            self.heartbeat.stop()
            try:
                WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()
            except DatabaseError:
                logger.warning("could not remove the heartbeat of %s", self.worker_id)
        if self._released:
            raise SystemExit(1)

    def _register(self) -> None:
        """Write this worker's heartbeat row, waiting for the database if it is down (a worker
        started while the database restarts waits for it rather than exiting)."""
        attempt = 0
        while self.running:
            try:
                self.heartbeat.register()
                return
            except DatabaseError:
                attempt += 1
                logger.warning("database unavailable at start-up (try %d); waiting", attempt)
                connection.close()
                self._wake.wait(min(0.5 * 2 ** (attempt - 1), 5))

    def _until_next_check(self, check: LeaseCheck) -> float:
        """Seconds until the next lease check: just after the earliest lease seen can run out
        (a dead worker's task is given back then, not up to a heartbeat interval later), and
        at least once per heartbeat interval (for tasks claimed after this check)."""
        wait = self.heartbeat.interval
        if check.next_expiry is not None:
            until = (check.next_expiry - timezone.now()).total_seconds() + EXPIRY_MARGIN
            wait = min(wait, max(until, 0.0))
        return wait

    def _once(self) -> bool:
        """Requeue abandoned tasks (when a lease can next run out, at least once per
        heartbeat interval), claim one and run it. Returns whether a task ran."""
        if not connection.in_atomic_block:  # (only a test calls this inside a transaction)
            close_old_connections()  # drop a connection the database closed meanwhile
        if time.monotonic() >= self._next_requeue:
            check = check_leases(backend_name=self.backend_name)
            self._next_requeue = time.monotonic() + self._until_next_check(check)
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        with exclusive_transaction(tasks.db):
            row = tasks.get_locked()
            if row is not None:
                row.claim(self.worker_id)
        if row is None:
            return False
        self.heartbeat.current_task = str(row.id)
        try:
            self.run_task(row)
        finally:
            self.heartbeat.current_task = None
        return True

    def run_task(self, db_task_result: DBTaskResult) -> None:
        """Run the claimed task; record success, a retry, a failure for good, or a release."""
        row = db_task_result
        self.running_task = True
        outcome: tuple[str, Any]
        try:
            task = row.task
            sender = type(task.get_backend())
            task_started.send(sender=sender, task_result=row.task_result)
            result = row.task_result
            self._in_task_code = True
            try:
                if task.takes_context:
                    from django.tasks import TaskContext

                    value = task.call(
                        TaskContext(task_result=result), *result.args, **result.kwargs
                    )
                else:
                    value = task.call(*result.args, **result.kwargs)
            finally:
                self._in_task_code = False
            outcome = (SUCCESSFUL, value)
        except ReleaseTask:
            outcome = (READY, None)
        except Exception as e:  # noqa: BLE001 - any error of the task is recorded on its row
            logger.warning("task %s (%s) raised %r", row.id, row.task_path, e)
            outcome = (FAILED, e)
        finally:
            self._in_task_code = False
            self.running_task = False
            self._run_tasks += 1
        status = self._record(row, *outcome)
        if outcome[0] == READY:
            self._released = True
            self.running = False
        if status in (SUCCESSFUL, FAILED):
            try:
                task_finished.send(sender=sender, task_result=row.task_result)
            except Exception:  # noqa: BLE001 - a receiver's error must not stop the worker
                logger.exception("task_finished receiver failed for %s", row.id)

    def _record(self, claimed: DBTaskResult, status: str, value: Any) -> str | None:
        """Write the outcome under the row's lock, only if the row is still this worker's
        claim (a worker that was only slow finds it requeued and discards its result).

        Across a lost connection (a database restart or failover) it keeps trying, backing
        off to 5 s, for as long as the worker runs: given up, the row would stay ``RUNNING``
        under a worker whose heartbeat is fresh, and so would never be given back. A worker
        told to stop gives up after a few tries; its heartbeat then stops and the lease
        hands the task on."""
        attempt = 0
        while True:
            try:
                return self._record_once(claimed, status, value)
            except DatabaseError:
                attempt += 1
                logger.warning(
                    "could not record the outcome of task %s (try %d)",
                    claimed.id,
                    attempt,
                    exc_info=attempt == 1,
                )
                connection.close()
                if not self.running and attempt >= 5:
                    return None
                delay = min(0.5 * 2 ** (attempt - 1), 5)
                if self.running:
                    self._wake.wait(delay)  # a stop signal cuts the wait short
                else:
                    time.sleep(delay)

    def _record_once(self, claimed: DBTaskResult, status: str, value: Any) -> str | None:
        now = timezone.now()
        with exclusive_transaction(DBTaskResult.objects.db):
            row = DBTaskResult.objects.select_for_update().filter(pk=claimed.pk).first()
            if row is None or row.status != RUNNING or row.worker_ids != claimed.worker_ids:
                logger.warning(
                    "task %s is no longer this worker's claim; result discarded", claimed.pk
                )
                return None
            if status == SUCCESSFUL:
                try:
                    row.set_successful(value)
                except (TypeError, ValueError) as e:  # e.g. a return value JSON cannot hold
                    status, value = FAILED, e
                    row.refresh_from_db()
                else:
                    claimed.__dict__.update(row.__dict__)
                    return SUCCESSFUL
            if status == READY:  # released by a second stop signal: the claim is undone
                row.status = READY
                row.worker_ids = row.worker_ids[:-1]
                row.save(update_fields=["status", "worker_ids"])
                return READY
            attempts = len(row.worker_ids)
            _error_fields(row, value)
            if attempts < moderation_settings.TASK_MAX_ATTEMPTS:
                row.status = READY
                row.run_after = now + retry_delay(attempts)
                row.save(update_fields=["status", "run_after", "exception_class_path", "traceback"])
                logger.warning(
                    "task %s will be tried again at %s (attempt %d of %d failed)",
                    row.pk,
                    row.run_after,
                    attempts,
                    moderation_settings.TASK_MAX_ATTEMPTS,
                )
                return READY
            row.status = FAILED
            row.finished_at = now
            row.return_value = None
            row.save(
                update_fields=[
                    "status",
                    "finished_at",
                    "return_value",
                    "exception_class_path",
                    "traceback",
                ]
            )
            claimed.__dict__.update(row.__dict__)
            return FAILED


def retry_failed(task_id: str, *, actor: Any = None) -> DBTaskResult | None:
    """Queue a task that failed for good again, with a fresh set of attempts; audited, with
    its earlier attempts and error. None if it is not failed (any more: retried meanwhile)."""
    from moderation.models import AuditEvent

    with exclusive_transaction(DBTaskResult.objects.db):
        row = DBTaskResult.objects.select_for_update().filter(pk=task_id, status=FAILED).first()
        if row is None:
            return None
        error = row.traceback.strip().splitlines()[-1:] or [row.exception_class_path]
        AuditEvent.objects.create(
            action=AuditEvent.Action.RETRY_TASK,
            actor=actor,
            target=f"task {row.task_name} ({row.pk})"[:200],
            reason=f"failed after {len(row.worker_ids)} attempt(s): {error[0]}",
        )
        row.status = READY
        row.worker_ids = []
        row.finished_at = None
        row.run_after = get_date_max()
        row.save(update_fields=["status", "worker_ids", "finished_at", "run_after"])
        return row
