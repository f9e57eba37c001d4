"""The machinery of the crash tests (``tests/test_crash_safety.py``): ``run_worker`` processes
to kill, stored profiles for a sweep to scan, the checks every kind shares, and the sweep
scenario itself (its worker SIGKILLed, its connections cut, or its server restarted).

Every number comes from the environment so ``scripts/crash_loop.py`` can run one kind many
times, at another scale: ``CRASH_ITERATIONS``, ``CRASH_PROFILES``, ``CRASH_LEASE``,
``CRASH_KILL_AT`` and ``CRASH_REPORT`` (JSON lines, one per iteration).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from moderation import flagging
from moderation.models import AuditEvent, FlaggedFingerprint, WorkerHeartbeat
from moderation.sweeping import sweep_task
from profiles.models import Profile
from tests import images
from tests.processes import ManageProcess, wait_for

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "2"))
FILLERS = int(os.environ.get("CRASH_PROFILES", "3000"))  # stored profiles besides the copies
LEASE = int(os.environ.get("CRASH_LEASE", "2"))
HEARTBEAT = max(1, LEASE // 3)
REPORT = os.environ.get("CRASH_REPORT")
# Seconds into a sweep to kill it (a worker killed 1.5 s into a sweep, say); unset, a random point.
KILL_AT = float(os.environ["CRASH_KILL_AT"]) if os.environ.get("CRASH_KILL_AT") else None
# From the kill until everything is done: lease + task (a sweep scans ~10k profiles/s) + start-up.
TIMEOUT = 60 + LEASE + FILLERS // 2000
SCENE = 21  # tests/images.photo(21): its resized copies verify (tests/test_worker.py)
COPIES = (0.5, 0.6, 0.7, 0.8, 0.9)
DATABASE_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
IMMEDIATE_TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}


class Workers:
    """``run_worker`` processes started one after the other; each can be killed."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.procs: list[ManageProcess] = []

    def start(self, *, heartbeat: int = HEARTBEAT, lease: int = LEASE) -> ManageProcess:
        proc = ManageProcess(
            "run_worker",
            "--interval=0.1",
            "--no-startup-delay",
            f"--worker-id=crash-{os.getpid()}-{len(self.procs) + 1}",
            "--verbosity=2",
            MODERATION_TASKS_BACKEND="database",
            MODERATION_WORKER_HEARTBEAT_SECONDS=str(heartbeat),
            MODERATION_WORKER_LEASE_SECONDS=str(lease),
            MODERATION_TASK_RETRY_SECONDS="0",
            DJANGO_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            DJANGO_EMAIL_FILE_PATH=str(self.mail_dir),
        )
        self.procs.append(proc)
        return proc

    @property
    def current(self) -> ManageProcess:
        return self.procs[-1]

    def kill(self) -> float:
        """SIGKILL the current worker (no handler runs, as the OOM killer does); when."""
        return self.kill_process(self.current)

    def kill_process(self, proc: ManageProcess) -> float:
        os.kill(proc.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.proc.wait(10)
        return killed

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)


def worker_id(proc: ManageProcess) -> str:
    [arg] = [a for a in proc.args if a.startswith("--worker-id=")]
    return arg.removeprefix("--worker-id=")


def record(kind: str, **fields) -> None:
    if REPORT:
        with open(REPORT, "a") as fh:
            fh.write(json.dumps({"kind": kind, **fields}) + "\n")


def task_row(task, **filters) -> DBTaskResult | None:
    return DBTaskResult.objects.filter(task_path=task.module_path, **filters).first()


def wait_until_running(task, pool: Workers) -> DBTaskResult:
    """The task's row once a worker has started it: running, or already finished, since a
    short task (a recheck takes milliseconds) can start and end between two looks."""
    return wait_for(
        lambda: task_row(task, started_at__isnull=False),
        timeout=TIMEOUT,
        what=f"{task.name} to start",
        process=pool.current,
    )


def wait_until_successful(task, pool: Workers) -> DBTaskResult:
    row = wait_for(
        lambda: task_row(task, finished_at__isnull=False),
        timeout=TIMEOUT,
        what=f"{task.name} to finish",
        process=pool.current,
    )
    assert row.status == "SUCCESSFUL", f"{row.status}: {row.traceback}\n{pool.describe()}"
    return row


def fill_profiles(n: int, django_user_model) -> None:
    """``n`` stored profiles with random fingerprints (no file: a sweep compares hashes)."""
    from moderation.hashing import to_signed

    rng = random.Random(n)
    users = django_user_model.objects.bulk_create(
        django_user_model(username=f"filler{i}", password="!") for i in range(n)
    )
    Profile.objects.bulk_create(
        Profile(
            user=user,
            photo=f"photos/filler{i}.jpg",
            photo_dhash=to_signed(rng.getrandbits(64)),
            photo_phash=to_signed(rng.getrandbits(64)),
            photo_pipeline_version=5,
        )
        for i, user in enumerate(users)
    )


def flag(seed: int) -> FlaggedFingerprint:
    return flagging.flag_image(
        file=images.upload(images.photo(seed), f"banned{seed}.png", "PNG"),
        reason="crash test",
        source=FlaggedFingerprint.Source.COMMAND,
        keep_original=False,
    ).fingerprint


def sweep_seconds(settings) -> float:
    """How long one flag's sweep over the stored profiles takes here (a flag of an unrelated
    picture, swept in this process): the window the kill is aimed at."""
    settings.TASKS = IMMEDIATE_TASKS
    started = time.monotonic()
    flag(SCENE + 1)
    elapsed = time.monotonic() - started
    settings.TASKS = DATABASE_TASKS
    return elapsed


def assert_each_copy_down_exactly_once(
    copies: list[Profile], flagged, isolated_storage, *, others: int = 0
):
    """Each copy cleared, with one takedown in the audit trail and its evidence kept; no
    takedown besides (but ``others`` the test made itself)."""
    for profile in copies:
        profile.refresh_from_db()
        assert not profile.photo and profile.photo_dhash is None, profile
        events = AuditEvent.objects.filter(
            action=AuditEvent.Action.TAKEDOWN, target__endswith=f"(#{profile.pk})"
        )
        assert events.count() == 1, list(events.values("pk", "target", "created_at"))
        [event] = events
        assert event.fingerprint_id == flagged.pk
        assert (isolated_storage / "quarantine" / event.evidence.name).exists()
    takedowns = AuditEvent.objects.filter(action=AuditEvent.Action.TAKEDOWN).count()
    assert takedowns == len(copies) + others


def orphaned_public_files(copies: list[Profile], names: list[str], isolated_storage) -> int:
    """Public files of taken-down copies still in storage: deleted after the takedown's commit,
    so a kill between the commit and the deletion leaves one (no row points at it)."""
    return sum((isolated_storage / "media" / name).exists() for name in names)


def copies_of_scene(make_profile, prefix: str) -> list[Profile]:
    return [
        make_profile(f"{prefix}{i}", images.resized(images.photo(SCENE), factor))
        for i, factor in enumerate(COPIES)
    ]


def sweep_scenario(
    kind, settings, make_profile, django_user_model, workers, isolated_storage, *, cluster=None
):
    fill_profiles(FILLERS, django_user_model)
    window = sweep_seconds(settings) if KILL_AT is None else KILL_AT
    settings.TASKS = IMMEDIATE_TASKS  # the copies' rechecks run here (nothing banned yet)
    copies = copies_of_scene(make_profile, "copy")
    names = [c.photo.name for c in copies]
    settings.TASKS = DATABASE_TASKS
    workers.start()
    flagged = flag(SCENE)  # its sweep is queued for the worker
    wait_until_running(sweep_task, workers)
    # The scan is ``window``; the five takedowns (each verified from its file) come after it.
    delay = random.uniform(0, window * 1.5) if KILL_AT is None else KILL_AT
    time.sleep(delay)
    if kind == "pgrestart":
        mode = "fast" if cluster.restarts % 2 == 0 else "immediate"
        restarted_at = timezone.now()
        killed = time.monotonic()
        cluster.restart(mode)
        restart_seconds = time.monotonic() - killed
        connection.close()  # this process's connection went down with the server too
    elif kind == "pgkill":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            [cut] = cursor.fetchone()
        killed = time.monotonic()
    else:
        killed = workers.kill()
        down_before = Profile.objects.filter(pk__in=[c.pk for c in copies], photo="").count()
        finished_before = task_row(sweep_task, status="SUCCESSFUL") is not None
        last_beat = (
            WorkerHeartbeat.objects.filter(worker_id=worker_id(workers.current))
            .values_list("last_seen", flat=True)
            .first()
        )
        workers.start()

    def all_down():
        return not Profile.objects.filter(pk__in=[c.pk for c in copies]).exclude(photo="").exists()

    wait_for(all_down, timeout=TIMEOUT, what="every copy down", process=workers.current)
    seconds = time.monotonic() - killed
    row = wait_until_successful(sweep_task, workers)
    assert_each_copy_down_exactly_once(copies, flagged, isolated_storage)
    fillers = Profile.objects.filter(user__username__startswith="filler")
    assert fillers.exclude(photo="").count() == FILLERS  # no stranger taken down
    fields = {
        "delay": round(delay, 3),
        "window": round(window, 3),
        "kill_to_all_down": round(seconds, 2),
        "attempts": len(row.worker_ids),
        "last_run_seconds": round((row.finished_at - row.started_at).total_seconds(), 2),
        "orphaned_public_files": orphaned_public_files(copies, names, isolated_storage),
    }
    if kind == "pgrestart":
        fields["mode"] = mode
        fields["restart_seconds"] = round(restart_seconds, 2)
        fields["finished_before_kill"] = row.finished_at < restarted_at
        assert len(workers.procs) == 1, "the test started another worker"
        assert workers.current.proc.poll() is None, "the worker died with its database"
    elif kind == "pgkill":
        fields["connections_cut"] = cut
        assert workers.current.proc.poll() is None, "the worker died with its connections"
    else:
        fields["down_before_kill"] = down_before
        fields["finished_before_kill"] = finished_before
        if not finished_before and last_beat is not None:
            # The dead worker's last heartbeat to the sweep's new claim: the lease, and how
            # late the next worker looked.
            fields["last_beat_to_reclaim"] = round((row.started_at - last_beat).total_seconds(), 2)
    return fields
