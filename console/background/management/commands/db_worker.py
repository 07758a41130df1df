"""`manage.py db_worker`: django-tasks-db's worker, which also keeps the
console's periodic tasks going (the periodic sync, the bulk retry watchdog).

Starting any number of these is all production needs: each books the
periodic sync when none is waiting or running, at start and then every few
seconds, and replaces a round whose worker was killed (`console.background.keeper`).
This app comes before django_tasks_db in INSTALLED_APPS so that this command
is the one `manage.py db_worker` runs.
"""

import os

from django.utils.autoreload import DJANGO_AUTORELOAD_ENV
from django_tasks_db.management.commands import db_worker

from console.background.keeper import keeper_start


class Command(db_worker.Command):
    help = "Run the background worker (bulk retries, syncs) and keep the periodic sync going."

    def handle(self, *args, batch=False, reload=False, **options):
        # `--batch` drains the queue and exits: it keeps nothing going. With
        # `--reload`, only the child process that runs tasks keeps the chains.
        keeper_stop = None
        if not batch and (not reload or os.environ.get(DJANGO_AUTORELOAD_ENV) == "true"):
            keeper_stop = keeper_start()
        try:
            super().handle(*args, batch=batch, reload=reload, **options)
        finally:
            if keeper_stop is not None:
                # Stopped (SIGTERM, Ctrl-C): not alive any more. A killed
                # worker's row just ages out (console.background.workers).
                keeper_stop()
