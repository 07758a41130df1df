import django.db.models.deletion
from django.db import migrations, models

# The runs page's counts per status are kept by the database on every write
# of a run, as the failure inbox's are (0010): an insert counts the run in,
# a delete counts it out, an update that changes its status or team moves it.
# The page then reads a few rows instead of counting a big team's runs.
#
# NB: SQLite drops a table's triggers when a migration copies it (an
# AddField with a default, an AlterField): such a migration of runs_run must
# create these again (create_triggers below), as 0011 does for 0010's.

SQLITE_ENTER = """
INSERT INTO runs_runstatuscount (team_id, status, count) VALUES (new.team_id, new.status, 1)
  ON CONFLICT (team_id, status) DO UPDATE SET count = count + 1;
"""
SQLITE_LEAVE = """
UPDATE runs_runstatuscount SET count = count - 1
  WHERE team_id = old.team_id AND status = old.status;
"""
SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS runs_run_status_ai",
    "DROP TRIGGER IF EXISTS runs_run_status_ad",
    "DROP TRIGGER IF EXISTS runs_run_status_au",
    f"CREATE TRIGGER runs_run_status_ai AFTER INSERT ON runs_run BEGIN {SQLITE_ENTER} END",
    f"CREATE TRIGGER runs_run_status_ad AFTER DELETE ON runs_run BEGIN {SQLITE_LEAVE} END",
    "CREATE TRIGGER runs_run_status_au AFTER UPDATE OF status, team_id ON runs_run "
    "WHEN old.status IS NOT new.status OR old.team_id IS NOT new.team_id "
    f"BEGIN {SQLITE_LEAVE} {SQLITE_ENTER} END",
]
SQLITE_DROP = SQLITE_TRIGGERS[:3]

# A team's counts are changed by one transaction at a time: the same
# transaction-scoped advisory lock on the team as the failure counts' (0010,
# console/runs/failure_counts.PG_LOCK_CLASS), taken before any count row, so
# that two writers moving runs between two statuses in opposite directions
# can't deadlock on the two rows.
POSTGRES_TRIGGERS = [
    """
CREATE OR REPLACE FUNCTION runs_run_status_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_advisory_xact_lock(7313, OLD.team_id::integer);
    UPDATE runs_runstatuscount SET count = count - 1
      WHERE team_id = OLD.team_id AND status = OLD.status;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_advisory_xact_lock(7313, NEW.team_id::integer);
    INSERT INTO runs_runstatuscount AS c (team_id, status, count)
      VALUES (NEW.team_id, NEW.status, 1)
      ON CONFLICT (team_id, status) DO UPDATE SET count = c.count + 1;
  END IF;
  RETURN NULL;
END $$
""",
    "DROP TRIGGER IF EXISTS runs_run_status_count_in_out ON runs_run",
    "DROP TRIGGER IF EXISTS runs_run_status_count_moved ON runs_run",
    "CREATE TRIGGER runs_run_status_count_in_out AFTER INSERT OR DELETE ON runs_run "
    "FOR EACH ROW EXECUTE FUNCTION runs_run_status_count()",
    "CREATE TRIGGER runs_run_status_count_moved AFTER UPDATE OF status, team_id ON runs_run "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.team_id IS DISTINCT FROM NEW.team_id) EXECUTE FUNCTION runs_run_status_count()",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS runs_run_status_count_in_out ON runs_run",
    "DROP TRIGGER IF EXISTS runs_run_status_count_moved ON runs_run",
    "DROP FUNCTION IF EXISTS runs_run_status_count()",
]

FILL = """
INSERT INTO runs_runstatuscount (team_id, status, count)
  SELECT team_id, status, COUNT(*) FROM runs_run GROUP BY team_id, status
"""


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in SQLITE_TRIGGERS if vendor == "sqlite" else POSTGRES_TRIGGERS:
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in SQLITE_DROP if vendor == "sqlite" else POSTGRES_DROP:
        schema_editor.execute(statement, params=None)


def count_and_keep_counting(apps, schema_editor):
    """The counts of the runs already cached, then the triggers that keep them."""
    schema_editor.execute(FILL, params=None)
    create_triggers(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0013_known_workflows"),
        ("teams", "0003_account_time_zone"),
    ]

    operations = [
        migrations.CreateModel(
            name="RunStatusCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("status", models.CharField(max_length=16)),
                ("count", models.IntegerField()),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="teams.team",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("team", "status"), name="status_count_unique")
                ],
            },
        ),
        migrations.RunPython(count_and_keep_counting, drop_triggers),
    ]
