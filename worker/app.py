"""The Celery app, as the worker sees it (defined in `bertq.dispatch`, which senders import)."""

from bertq.dispatch import DEFAULT_QUEUE, QUEUES, dispatch, make_app, send_job, task_name

__all__ = ["DEFAULT_QUEUE", "QUEUES", "dispatch", "make_app", "send_job", "task_name"]
