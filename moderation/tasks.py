"""The import paths under which background tasks were queued before each flow owned its tasks.

A queued task is stored by its import path (``moderation.tasks.sweep_task``), so these names
keep working for tasks enqueued by the previous release until the queue has drained. New code
enqueues the flows' own tasks (``sweeping.sweep_task``...) through
``background.enqueue_on_commit``. Remove this module one release later, or drain the queue
first (stop the web processes, let ``manage.py run_worker`` finish, then deploy).
"""

from moderation.reindex import reindex_task
from moderation.review import review_digest_task
from moderation.sweeping import recheck_image_task, sweep_task

__all__ = ["recheck_image_task", "reindex_task", "review_digest_task", "sweep_task"]
