from django.db import migrations, models
from django.db.models import F


def jobs_ended_are_followed(apps, schema_editor):
    """Jobs that ended before retries were followed: there is nothing to
    follow (or announce again) for them."""
    job_model = apps.get_model("bulk", "BulkRetryJob")
    job_model.objects.filter(state__in=["finished", "canceled"]).update(
        followed_at=F("finished_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("bulk", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="bulkretryjob",
            name="followed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(jobs_ended_are_followed, migrations.RunPython.noop),
    ]
