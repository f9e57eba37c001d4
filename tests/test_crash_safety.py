"""Nothing a moderator decides is lost when a process dies: real workers, really killed.

Each test starts ``manage.py run_worker`` as a process on the PostgreSQL test database, lets it
start a task, kills it with SIGKILL after a random delay inside the task's run (or cuts its
database connections with ``pg_terminate_backend``, or restarts the server itself: a private
cluster, ``tests/private_postgres.py``), starts a new worker where one was killed, and checks
the outcome: every matching copy down exactly once, every owed moderator mailed one message
(resent, the same message, only when the kill fell between SMTP and the commit), no duplicate
in the audit trail. One more test bounds recovery: a dead worker's task is given back within
the lease of its last heartbeat.

The workers run with a 1 s heartbeat and a 2 s lease so a test takes seconds. Each kind runs
``CRASH_ITERATIONS`` times (default 2); ``scripts/crash_loop.py`` runs 50 and reads the
per-iteration records written to ``CRASH_REPORT`` (JSON lines). The worker processes, the
shared checks and the sweep scenario are in ``tests/crash_workers.py``.
"""

from __future__ import annotations

import email
import email.policy
import random
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from moderation.models import (
    EmailDelivery,
    ReviewItem,
    ReviewSubscription,
    WorkerHeartbeat,
)
from moderation.review import review_digest_task
from moderation.sweeping import recheck_image_task
from profiles.models import Profile
from tests import images
from tests.crash_workers import (
    DATABASE_TASKS,
    IMMEDIATE_TASKS,
    ITERATIONS,
    LEASE,
    SCENE,
    TIMEOUT,
    Workers,
    assert_each_copy_down_exactly_once,
    flag,
    record,
    sweep_scenario,
    task_row,
    wait_until_running,
    wait_until_successful,
    worker_id,
)
from tests.private_postgres import (
    TEMPLATE_COPY,
    PrivateCluster,
    copy_test_database,
    use_private_database,
)
from tests.processes import ManageProcess, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def workers(settings, tmp_path, isolated_storage):
    settings.TASKS = DATABASE_TASKS
    settings.MODERATION_WORKER_LEASE_SECONDS = LEASE
    pool = Workers(tmp_path / "mail")
    try:
        yield pool
    finally:
        for proc in pool.procs:
            proc.stop()
        print(pool.describe())  # shown by pytest when the test failed
        for proc in pool.procs:
            proc.cleanup()


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_sweep_killed_at_a_random_point_takes_every_copy_down_exactly_once(
    iteration, settings, make_profile, django_user_model, workers, isolated_storage
):
    fields = sweep_scenario(
        "sweep", settings, make_profile, django_user_model, workers, isolated_storage
    )
    record("sweep", iteration=iteration, **fields)


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_sweep_whose_database_connections_are_cut_still_takes_every_copy_down_once(
    iteration, settings, make_profile, django_user_model, workers, isolated_storage
):
    fields = sweep_scenario(
        "pgkill", settings, make_profile, django_user_model, workers, isolated_storage
    )
    record("pgkill", iteration=iteration, **fields)


@pytest.fixture(scope="module")
def private_cluster(django_db_setup):
    """A PostgreSQL cluster of this module's own (never the machine's, which others use),
    holding a copy of the test database to clone for each test."""
    cluster = PrivateCluster()
    try:
        cluster.start()
        copy_test_database(cluster, TEMPLATE_COPY)
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def private_database(private_cluster, request):
    """This test (and the workers it starts) on a fresh copy on the private cluster."""
    with use_private_database(private_cluster, f"crash_{request.node.callspec.id}"):
        yield private_cluster


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_sweep_through_a_postgresql_restart_takes_every_copy_down_once_and_the_worker_lives_on(
    iteration, private_database, settings, make_profile, django_user_model, workers,
    isolated_storage,
):  # fmt: skip
    """The server itself restarted at a random point of a sweep (``pg_ctl restart``, ``-m
    fast`` and ``-m immediate`` in turn): the same worker, never restarted, reconnects, the
    sweep finishes (tried again when the restart cut it), and every copy is down exactly once.
    A worker that exited when its database went away would leave the queue unserved until
    someone noticed."""
    fields = sweep_scenario(
        "pgrestart",
        settings,
        make_profile,
        django_user_model,
        workers,
        isolated_storage,
        cluster=private_database,
    )
    record("pgrestart", iteration=iteration, **fields)


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_recheck_killed_at_a_random_point_takes_the_copy_down_exactly_once(
    iteration, settings, make_profile, workers, isolated_storage
):
    settings.TASKS = IMMEDIATE_TASKS
    flagged = flag(SCENE)  # committed while the copy was being uploaded (the race a recheck
    # closes): the copy was screened before it and is stored now, its recheck queued
    # The window: a copy stored and rechecked (taken down) in this process, an upper bound.
    started = time.monotonic()
    make_profile("calibration", images.resized(images.photo(SCENE), 0.6))
    window = time.monotonic() - started
    settings.TASKS = DATABASE_TASKS
    workers.start()
    [copy] = [make_profile("racer", images.resized(images.photo(SCENE), 0.7))]
    wait_until_running(recheck_image_task, workers)
    delay = random.uniform(0, window)
    time.sleep(delay)
    killed = workers.kill()
    done_before = not Profile.objects.get(pk=copy.pk).photo
    finished_before = task_row(recheck_image_task, status="SUCCESSFUL") is not None
    workers.start()

    row = wait_until_successful(recheck_image_task, workers)

    assert_each_copy_down_exactly_once([copy], flagged, isolated_storage, others=1)
    record(
        "recheck",
        iteration=iteration,
        delay=round(delay, 3),
        kill_to_done=round(time.monotonic() - killed, 2),
        attempts=len(row.worker_ids),
        window=round(window, 3),
        down_before_kill=done_before,
        finished_before_kill=finished_before,
    )


SUBSCRIBERS = 12


def mail_messages(mail_dir: Path) -> list[tuple[str, str, bytes]]:
    """(To, Message-ID, raw bytes) of every message the file backend wrote: one file per
    connection, each message followed by a line of 79 dashes."""
    if not mail_dir.exists():
        return []
    separator = "\n" + "-" * 79 + "\n"
    messages = []
    for path in sorted(mail_dir.iterdir()):
        for chunk in path.read_text().split(separator):
            if not chunk.strip():
                continue
            message = email.message_from_string(chunk, policy=email.policy.default)
            messages.append((message["To"], message["Message-ID"], chunk.encode()))
    return messages


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_digest_killed_while_mailing_gives_each_moderator_one_message_resent_only_if_in_flight(
    iteration, settings, moderator, django_user_model, workers, tmp_path
):
    """A kill between SMTP accepting a summary and the commit marking it sent cannot be told
    apart, by the sender, from a kill before the send; that one message goes out again. What
    must hold: every owed moderator receives exactly one message (one Message-ID, the one on
    their delivery row), and a raw retransmission is only ever that in-flight message, byte
    for byte the same, so a mail system that collapses by Message-ID shows one summary."""

    settings.TASKS = IMMEDIATE_TASKS
    flagged = flag(SCENE)
    ReviewItem.objects.create(
        target_key="profiles.profile.photo",
        object_id=1,
        file_name="photos/x.jpg",
        dhash=flagged.dhash,
        fingerprint=flagged,
        distance=7,
    )
    addresses = []
    for i in range(SUBSCRIBERS):
        user = django_user_model.objects.create_user(
            username=f"sub{i}", password="!", is_staff=True, email=f"sub{i}@example.com"
        )
        user.user_permissions.add(*moderator.user_permissions.all())
        # Owed a summary: an upload was queued while they were inside their period, now over.
        ReviewSubscription.objects.create(user=user, pending_since=timezone.now())
        addresses.append(user.email)
    settings.TASKS = DATABASE_TASKS
    workers.start()
    review_digest_task.enqueue()
    wait_until_running(review_digest_task, workers)
    # Killed while mailing: once the first email is written, within the next few.
    wait_for(
        lambda: mail_messages(workers.mail_dir),
        timeout=TIMEOUT,
        what="the first email",
        process=workers.current,
    )
    delay = random.uniform(0, 0.1)
    time.sleep(delay)
    killed = workers.kill()
    written = mail_messages(workers.mail_dir)
    finished_before = task_row(review_digest_task, status="SUCCESSFUL") is not None
    # In flight at the kill: written (SMTP accepted it) but its row not marked sent. A worker
    # mails one at a time, so at most one message can be.
    marked = set(
        EmailDelivery.objects.filter(sent_at__isnull=False).values_list("message_id", flat=True)
    )
    in_flight = {message_id for _, message_id, _ in written} - marked
    assert len(in_flight) <= 1, in_flight
    workers.start()

    def all_sent():
        return EmailDelivery.objects.filter(sent_at__isnull=False).count() >= SUBSCRIBERS

    wait_for(all_sent, timeout=TIMEOUT, what="every owed email sent", process=workers.current)
    seconds = time.monotonic() - killed
    wait_until_successful(review_digest_task, workers)
    time.sleep(0.5)  # a duplicate would be written by now (sent, then marked sent)

    received = mail_messages(workers.mail_dir)
    deliveries = {d.recipient: d for d in EmailDelivery.objects.all()}
    assert sorted(deliveries) == sorted(addresses)
    assert all(d.sent_at for d in deliveries.values())
    ids_by_address = {a: set() for a in addresses}
    copies: dict[str, list[bytes]] = {}
    for to, message_id, raw in received:
        assert to in ids_by_address, to  # nobody else
        ids_by_address[to].add(message_id)
        copies.setdefault(message_id, []).append(raw)
    # Each owed moderator: exactly one message, the one their delivery row names.
    assert ids_by_address == {a: {deliveries[a].message_id} for a in addresses}, ids_by_address
    # Sent more than once: only the message in flight at the kill, once more, unchanged.
    resent = {message_id: len(raws) - 1 for message_id, raws in copies.items() if len(raws) > 1}
    assert set(resent) <= in_flight and sum(resent.values()) <= 1, (resent, in_flight)
    assert all(len(set(raws)) == 1 for raws in copies.values())
    assert not ReviewSubscription.objects.filter(pending_since__isnull=False).exists()
    record(
        "digest",
        iteration=iteration,
        delay=round(delay, 3),
        kill_to_all_sent=round(seconds, 2),
        sent_before_kill=len(written),
        in_flight_at_kill=len(in_flight),
        retransmitted=sum(resent.values()),
        distinct_messages=len(copies),
        finished_before_kill=finished_before,
    )


REINDEXED = 24  # stored photos with an old pipeline version, besides the stale copy


@pytest.mark.parametrize("iteration", range(ITERATIONS))
def test_a_reindex_killed_at_a_random_point_reindexes_every_row_once_and_sweeps(
    iteration, settings, make_profile, django_user_model, workers, isolated_storage
):
    from django.core.files.base import ContentFile
    from django.db import transaction

    from moderation import reindex
    from moderation.hashing import PIPELINE_VERSION, fingerprint
    from moderation.models import ReindexRun
    from moderation.reindex import reindex_range_task, sweep_range_task

    settings.TASKS = IMMEDIATE_TASKS
    flagged = flag(SCENE)
    started = time.monotonic()
    for i in range(REINDEXED):
        make_profile(f"old{i}", images.photo(300 + i))
    window = time.monotonic() - started  # upper bound: storing also re-encodes and rechecks
    Profile.objects.update(photo_pipeline_version=0)
    # A copy of the banned scene whose stored hash is stale: only the reindex can catch it.
    content = images.encode(images.resized(images.photo(SCENE), 0.7), "JPEG", quality=90)
    name = Profile.photo.field.storage.save("photos/stale.jpg", ContentFile(content))
    stale = Profile.objects.create(
        user=django_user_model.objects.create_user(username="stale", password="!"),
        photo=name,
        photo_dhash=fingerprint(ContentFile(content)).signed ^ 0x0F0F_0F0F_0F0F,
        photo_pipeline_version=0,
    )
    settings.TASKS = DATABASE_TASKS
    workers.start()
    # Ranges of 4 stored images, batches of 2: several range tasks, each committing batches.
    settings.MODERATION_REINDEX_RANGE_SIZE = 4
    run, _ = reindex.reindex_open_run(batch_size=2)
    with transaction.atomic():
        reindex.enqueue_ranges(run)
    wait_until_running(reindex_range_task, workers)
    delay = random.uniform(0, window)
    time.sleep(delay)
    killed = workers.kill()
    finished_before = ReindexRun.objects.get(pk=run.pk).finished_at is not None
    workers.start()

    def finished():
        return ReindexRun.objects.get(pk=run.pk).finished_at

    wait_for(finished, timeout=TIMEOUT, what="the reindex run to finish", process=workers.current)
    seconds = time.monotonic() - killed
    run.refresh_from_db()
    assert run.counts["processed"] == REINDEXED + 1, run.counts  # each row once
    assert run.counts["changed"] == 1, run.counts  # the stale copy's hash
    assert (
        not Profile.objects.exclude(photo="")
        .exclude(photo_pipeline_version=PIPELINE_VERSION)
        .exists()
    )
    assert_each_copy_down_exactly_once([stale], flagged, isolated_storage)
    assert Profile.objects.exclude(photo="").count() == REINDEXED
    parts = DBTaskResult.objects.filter(
        task_path__in=[reindex_range_task.module_path, sweep_range_task.module_path]
    )
    record(
        "reindex",
        iteration=iteration,
        delay=round(delay, 3),
        window=round(window, 3),
        kill_to_done=round(seconds, 2),
        parts=parts.count(),
        requeued=sum(len(p.worker_ids) > 1 for p in parts),
        finished_before_kill=finished_before,
    )


def test_an_idle_worker_requeues_a_dead_workers_task_as_its_lease_runs_out_not_a_beat_later(
    workers, tmp_path
):
    """Recovery after a kill is bounded by the lease from the dead worker's last heartbeat
    (then the task runs again). Looking for abandoned tasks only once per heartbeat interval
    would add up to a whole interval; so a live worker looks again when the earliest lease it
    saw can run out. A long heartbeat interval (5 s) against a small margin tells them apart."""
    from tests.background_tasks import slow

    heartbeat, lease, margin = 5, 10, 0.75
    first = workers.start(heartbeat=heartbeat, lease=lease)
    started = tmp_path / "started"
    result = slow.enqueue(120, str(started))
    wait_for(started.exists, timeout=TIMEOUT, what="the task to start", process=first)
    second = workers.start(heartbeat=heartbeat, lease=lease)
    second_id = worker_id(second)
    wait_for(
        WorkerHeartbeat.objects.filter(worker_id=second_id).exists,
        timeout=TIMEOUT,
        what="the second worker",
        process=second,
    )
    time.sleep(random.uniform(0, heartbeat))  # anywhere between two beats of the first
    workers.kill_process(first)
    last_beat = WorkerHeartbeat.objects.get(worker_id=worker_id(first)).last_seen

    def claimed_again():
        row = DBTaskResult.objects.get(pk=result.id)
        return row if len(row.worker_ids) == 2 else None

    row = wait_for(
        claimed_again,
        timeout=lease + TIMEOUT,
        what="the task to be claimed again",
        process=second,
    )

    assert row.worker_ids[-1] == second_id
    requeued_after = (row.started_at - last_beat).total_seconds()
    assert lease <= requeued_after <= lease + margin, (requeued_after, workers.describe())
    record("lease_bound", requeued_after_last_beat=round(requeued_after, 3), lease=lease)


def test_sigterm_lets_the_running_task_finish_then_the_worker_exits_0(workers, tmp_path):
    from tests.background_tasks import slow

    proc = workers.start()
    started = tmp_path / "started"
    result = slow.enqueue(1.5, str(started))
    wait_for(started.exists, timeout=TIMEOUT, what="the task to start", process=proc)

    proc.proc.send_signal(signal.SIGTERM)

    assert proc.proc.wait(TIMEOUT) == 0, proc.describe()
    row = DBTaskResult.objects.get(pk=result.id)
    assert (row.status, row.return_value) == ("SUCCESSFUL", "slept")
    assert not DBTaskResult.objects.filter(status="RUNNING").exists()


def test_a_second_sigterm_releases_the_running_task_to_the_queue_before_exiting(workers, tmp_path):
    from tests.background_tasks import slow

    proc = workers.start()
    started = tmp_path / "started"
    result = slow.enqueue(30, str(started))
    wait_for(started.exists, timeout=TIMEOUT, what="the task to start", process=proc)

    proc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.proc.send_signal(signal.SIGTERM)

    assert proc.proc.wait(TIMEOUT) == 1, proc.describe()
    row = DBTaskResult.objects.get(pk=result.id)
    assert (row.status, row.worker_ids) == ("READY", [])  # not abandoned, not an attempt
    assert not WorkerHeartbeat.objects.exists()  # said goodbye: not counted as stale


def test_run_worker_never_starts_an_autoreloader_even_with_debug_on(workers, tmp_path):
    proc = ManageProcess(
        "run_worker", "--no-startup-delay", DJANGO_DEBUG="1", MODERATION_TASKS_BACKEND="database"
    )
    workers.procs.append(proc)

    wait_for(WorkerHeartbeat.objects.exists, timeout=TIMEOUT, what="the worker", process=proc)
    children = [
        stat for stat in Path("/proc").glob("[0-9]*/stat") if _parent_pid(stat) == proc.proc.pid
    ]
    assert children == [], "run_worker started a child process (an autoreloader's worker)"
    assert WorkerHeartbeat.objects.get().pid == proc.proc.pid  # the process itself works


def _parent_pid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
