"""The module `celery -A` points at (`bertq worker` does this for you)."""

from bertq.worker.app import make_app

app = make_app()
