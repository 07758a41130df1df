from datetime import UTC

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Max, Min
from django.db.models.functions import Trunc

# The failure inbox's counts are kept by the database on every write of a
# run: an insert, an update that moves a run into, out of or within its
# group (its key, team or created time), a delete, a cascade. Each write
# takes the run out of its old group (and hour) and puts it into its new
# one; the first or last seen time is looked up again from the group's runs
# (the run_team_failure_group index) only when the run leaving was the first
# or the last. A count that reaches 0 drops its row.
#
# NB: SQLite drops a table's triggers when a migration copies it (an
# AddField with a default, an AlterField): such a migration of runs_run must
# create these again (SQLITE_TRIGGERS below), as 0006 does for the search.

SQLITE_LEAVE = """
UPDATE runs_failuregroupcount SET count = count - 1,
  first_seen = CASE WHEN old.created_at <= first_seen THEN coalesce((
    SELECT min(created_at) FROM runs_run WHERE team_id = old.team_id
    AND failure_group = old.failure_group AND NOT (failure_group = '')), first_seen)
    ELSE first_seen END,
  last_seen = CASE WHEN old.created_at >= last_seen THEN coalesce((
    SELECT max(created_at) FROM runs_run WHERE team_id = old.team_id
    AND failure_group = old.failure_group AND NOT (failure_group = '')), last_seen)
    ELSE last_seen END
  WHERE team_id = old.team_id AND failure_group = old.failure_group;
DELETE FROM runs_failuregroupcount
  WHERE team_id = old.team_id AND failure_group = old.failure_group AND count <= 0;
UPDATE runs_failurehourcount SET count = count - 1
  WHERE team_id = old.team_id AND hour = strftime('%Y-%m-%d %H:00:00', old.created_at)
  AND failure_group = old.failure_group;
DELETE FROM runs_failurehourcount
  WHERE team_id = old.team_id AND hour = strftime('%Y-%m-%d %H:00:00', old.created_at)
  AND failure_group = old.failure_group AND count <= 0;
"""
SQLITE_ENTER = """
INSERT INTO runs_failuregroupcount (team_id, failure_group, failure_category,
  failure_reason_normalised, workflow_permanent_id, workflow_title, count, first_seen, last_seen)
  VALUES (new.team_id, new.failure_group, new.failure_category, new.failure_reason_normalised,
  new.workflow_permanent_id, new.workflow_title, 1, new.created_at, new.created_at)
  ON CONFLICT (team_id, failure_group) DO UPDATE SET count = count + 1,
  first_seen = min(first_seen, excluded.first_seen),
  last_seen = max(last_seen, excluded.last_seen), workflow_title = excluded.workflow_title;
INSERT INTO runs_failurehourcount (team_id, hour, failure_group, count)
  VALUES (new.team_id, strftime('%Y-%m-%d %H:00:00', new.created_at), new.failure_group, 1)
  ON CONFLICT (team_id, hour, failure_group) DO UPDATE SET count = count + 1;
"""
SQLITE_MOVED = (
    "(old.failure_group IS NOT new.failure_group OR old.team_id IS NOT new.team_id"
    " OR old.created_at IS NOT new.created_at)"
)
SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS runs_run_failure_ai",
    "DROP TRIGGER IF EXISTS runs_run_failure_ad",
    "DROP TRIGGER IF EXISTS runs_run_failure_au_leave",
    "DROP TRIGGER IF EXISTS runs_run_failure_au_enter",
    "CREATE TRIGGER runs_run_failure_ai AFTER INSERT ON runs_run "
    f"WHEN new.failure_group <> '' BEGIN {SQLITE_ENTER} END",
    "CREATE TRIGGER runs_run_failure_ad AFTER DELETE ON runs_run "
    f"WHEN old.failure_group <> '' BEGIN {SQLITE_LEAVE} END",
    "CREATE TRIGGER runs_run_failure_au_leave AFTER UPDATE ON runs_run "
    f"WHEN old.failure_group <> '' AND {SQLITE_MOVED} BEGIN {SQLITE_LEAVE} END",
    "CREATE TRIGGER runs_run_failure_au_enter AFTER UPDATE ON runs_run "
    f"WHEN new.failure_group <> '' AND {SQLITE_MOVED} BEGIN {SQLITE_ENTER} END",
]
SQLITE_DROP = SQLITE_TRIGGERS[:4]

# On PostgreSQL a team's counts are changed by one transaction at a time (a
# transaction-scoped advisory lock on the team, taken before any count row),
# so writers through different connections of a team neither lose counts
# nor deadlock on two groups taken in opposite orders.
# The advisory lock is (7313, team id): console/runs/failure_counts.PG_LOCK_CLASS.
POSTGRES_TRIGGERS = [
    """
CREATE OR REPLACE FUNCTION runs_run_failure_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.failure_group IS NOT DISTINCT FROM OLD.failure_group
     AND NEW.team_id IS NOT DISTINCT FROM OLD.team_id
     AND NEW.created_at IS NOT DISTINCT FROM OLD.created_at THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.failure_group <> '' THEN
    PERFORM pg_advisory_xact_lock(7313, OLD.team_id::integer);
    UPDATE runs_failuregroupcount c SET count = c.count - 1,
      first_seen = CASE WHEN OLD.created_at <= c.first_seen THEN coalesce((
        SELECT min(r.created_at) FROM runs_run r WHERE r.team_id = OLD.team_id
        AND r.failure_group = OLD.failure_group AND NOT (r.failure_group = '')), c.first_seen)
        ELSE c.first_seen END,
      last_seen = CASE WHEN OLD.created_at >= c.last_seen THEN coalesce((
        SELECT max(r.created_at) FROM runs_run r WHERE r.team_id = OLD.team_id
        AND r.failure_group = OLD.failure_group AND NOT (r.failure_group = '')), c.last_seen)
        ELSE c.last_seen END
      WHERE c.team_id = OLD.team_id AND c.failure_group = OLD.failure_group;
    DELETE FROM runs_failuregroupcount
      WHERE team_id = OLD.team_id AND failure_group = OLD.failure_group AND count <= 0;
    UPDATE runs_failurehourcount SET count = count - 1
      WHERE team_id = OLD.team_id
      AND hour = date_trunc('hour', OLD.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      AND failure_group = OLD.failure_group;
    DELETE FROM runs_failurehourcount
      WHERE team_id = OLD.team_id
      AND hour = date_trunc('hour', OLD.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      AND failure_group = OLD.failure_group AND count <= 0;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.failure_group <> '' THEN
    PERFORM pg_advisory_xact_lock(7313, NEW.team_id::integer);
    INSERT INTO runs_failuregroupcount AS c (team_id, failure_group, failure_category,
      failure_reason_normalised, workflow_permanent_id, workflow_title, count, first_seen,
      last_seen)
      VALUES (NEW.team_id, NEW.failure_group, NEW.failure_category,
      NEW.failure_reason_normalised, NEW.workflow_permanent_id, NEW.workflow_title, 1,
      NEW.created_at, NEW.created_at)
      ON CONFLICT (team_id, failure_group) DO UPDATE SET count = c.count + 1,
      first_seen = least(c.first_seen, EXCLUDED.first_seen),
      last_seen = greatest(c.last_seen, EXCLUDED.last_seen),
      workflow_title = EXCLUDED.workflow_title;
    INSERT INTO runs_failurehourcount AS h (team_id, hour, failure_group, count)
      VALUES (NEW.team_id,
      date_trunc('hour', NEW.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
      NEW.failure_group, 1)
      ON CONFLICT (team_id, hour, failure_group) DO UPDATE SET count = h.count + 1;
  END IF;
  RETURN NULL;
END $$
""",
    "DROP TRIGGER IF EXISTS runs_run_failure_count ON runs_run",
    "CREATE TRIGGER runs_run_failure_count AFTER INSERT OR UPDATE OR DELETE ON runs_run "
    "FOR EACH ROW EXECUTE FUNCTION runs_run_failure_count()",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS runs_run_failure_count ON runs_run",
    "DROP FUNCTION IF EXISTS runs_run_failure_count()",
]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in SQLITE_TRIGGERS if vendor == "sqlite" else POSTGRES_TRIGGERS:
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in SQLITE_DROP if vendor == "sqlite" else POSTGRES_DROP:
        schema_editor.execute(statement, params=None)


def fill_counts(apps, schema_editor):
    """The counts of every team's failure groups, from the runs already cached."""
    Run = apps.get_model("runs", "Run")
    FailureGroupCount = apps.get_model("runs", "FailureGroupCount")
    FailureHourCount = apps.get_model("runs", "FailureHourCount")
    failed = Run.objects.exclude(failure_group="").order_by()
    groups = failed.values("team_id", "failure_group").annotate(
        n=Count("id"),
        first=Min("created_at"),
        last=Max("created_at"),
        category=Max("failure_category"),
        reason=Max("failure_reason_normalised"),
        workflow=Max("workflow_permanent_id"),
        title=Max("workflow_title"),
    )
    FailureGroupCount.objects.bulk_create(
        (
            FailureGroupCount(
                team_id=row["team_id"],
                failure_group=row["failure_group"],
                failure_category=row["category"],
                failure_reason_normalised=row["reason"],
                workflow_permanent_id=row["workflow"],
                workflow_title=row["title"],
                count=row["n"],
                first_seen=row["first"],
                last_seen=row["last"],
            )
            for row in groups.iterator()
        ),
        batch_size=1000,
    )
    hours = (
        failed.annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .values("team_id", "hour", "failure_group")
        .annotate(n=Count("id"))
    )
    FailureHourCount.objects.bulk_create(
        (
            FailureHourCount(
                team_id=row["team_id"],
                hour=row["hour"],
                failure_group=row["failure_group"],
                count=row["n"],
            )
            for row in hours.iterator()
        ),
        batch_size=1000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0009_webhook_failure_and_actions'),
        ('teams', '0003_account_time_zone'),
    ]

    operations = [
        migrations.CreateModel(
            name='FailureGroupCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('failure_group', models.CharField(max_length=16)),
                ('failure_category', models.CharField(blank=True, default='', max_length=40)),
                ('failure_reason_normalised', models.CharField(blank=True, default='', max_length=500)),
                ('workflow_permanent_id', models.CharField(blank=True, default='', max_length=128)),
                ('workflow_title', models.CharField(blank=True, default='', max_length=300)),
                ('count', models.IntegerField()),
                ('first_seen', models.DateTimeField()),
                ('last_seen', models.DateTimeField()),
                ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='teams.team')),
            ],
            options={
                'indexes': [models.Index(fields=['team', '-last_seen'], name='failure_count_last_seen')],
                'constraints': [models.UniqueConstraint(fields=('team', 'failure_group'), name='failure_count_unique_per_group')],
            },
        ),
        migrations.CreateModel(
            name='FailureHourCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('hour', models.DateTimeField()),
                ('failure_group', models.CharField(max_length=16)),
                ('count', models.IntegerField()),
                ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='teams.team')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('team', 'hour', 'failure_group'), name='failure_hour_unique')],
            },
        ),
        migrations.RunPython(fill_counts, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
