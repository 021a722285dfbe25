from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0010_queue_pause_dashboard_stats")]

    # Tasks running at the upgrade were claimed by the previous engine, which counted the
    # attempt at the claim: they count as started.
    operations = [
        migrations.AddField(
            model_name="job",
            name="started_at",
            field=models.DateTimeField(
                blank=True,
                null=True,
                help_text="when the current attempt started; empty while claimed but not started",
            ),
        ),
        migrations.RunSQL(
            "UPDATE jobs_job SET started_at = claimed_at WHERE state = 'running'",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="job",
            name="attempt",
            field=models.PositiveIntegerField(
                default=0, help_text="attempts started so far, never reset"
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="claimed_by",
            field=models.CharField(
                blank=True, default="", max_length=255, help_text="the worker process holding it"
            ),
        ),
    ]
