"""Background work: the only code that knows django-tasks-db.

The apps define their tasks with Django's `@task` in their `tasks.py` (which
load ids and call services) and book them through here:
- `queue`: book a task once the transaction commits (`enqueue_on_commit`),
  or unless the same is already waiting (`enqueue_once`); what is waiting
  (`waiting_args`); and `TaskSlot`, by which a service books a task that its
  app's `tasks.py` defines, without importing it;
- `chains`: tasks that book their own next round, exactly once, and are
  revived when a worker dies mid-round (the periodic sync, the bulk retry
  watchdog);
- `keeper` and `manage.py db_worker`: django-tasks-db's worker, which also
  keeps every chain going.

Import from the submodules: this package is a Django app, loaded before its
models can be.
"""
