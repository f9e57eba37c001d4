"""``manage.py run_worker``: the production task worker (never autoreloads).

django-tasks-db's ``db_worker`` is the loop this runs, but on its own it is not enough for
production: it reloads on code changes whenever ``DEBUG`` is on (a parent that
watches files and a child that works; killing the parent orphans the child), it has no
heartbeat or lease (a task whose worker died stays ``RUNNING`` forever), no retries (a task
that raised is just ``FAILED``), and a second stop signal abandons the running task. This
command runs ``moderation.worker.Worker``, which adds those (see its module docstring), with
the library's options, and loads the index of stored photos on a helper thread as it starts
(the sweeps after flags use it). Run it under a supervisor (docs/operations.md has a systemd
unit).
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from moderation import stored_index
from moderation.worker import Worker, default_worker_id


class Command(DbWorkerCommand):
    help = (
        "Run the production task worker: heartbeats, a lease on running tasks, retries with "
        "backoff, SIGTERM finishes the current task (twice: releases it). Never reloads."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(reload=False, worker_id=None)

    def handle(
        self,
        *,
        verbosity,
        queue_name,
        interval,
        batch,
        backend_name,
        startup_delay,
        reload,
        max_tasks,
        worker_id,
        exclude_queues,
        **options,
    ):
        if reload:
            raise CommandError(
                "run_worker never reloads (a production worker must not). For development "
                "use `manage.py db_worker --reload`."
            )
        self.configure_logging(verbosity)
        queue_names = queue_name.split(",")
        excluded = exclude_queues.split(",") if exclude_queues else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = Worker(
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id or default_worker_id(),
            excluded_queue_names=excluded,
        )
        worker.configure_signals()
        stored_index.warm_in_background()
        worker.run()
