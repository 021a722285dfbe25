"""Flow control: the limits a claim enforces, stored on the row at enqueue; the rate
windows' starts; the claim index split into rows without and with a limit."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0012_drop_taskcounter'),
    ]

    operations = [
        migrations.CreateModel(
            name='RateStart',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('key', models.CharField(max_length=255)),
                ('started_at', models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name='job',
            name='limit_key',
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='limit_max',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_key',
            field=models.CharField(blank=True, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_max',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='rate_seconds',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(models.F('queue'), models.OrderBy(models.F('priority'), descending=True), models.F('run_at'), models.F('id'), condition=models.Q(('limit_key__isnull', True), ('rate_key__isnull', True), ('state__in', ['queued', 'retrying'])), name='jobs_job_claim_free_idx'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(models.F('queue'), models.OrderBy(models.F('priority'), descending=True), models.F('run_at'), models.F('id'), condition=models.Q(('state__in', ['queued', 'retrying']), models.Q(('limit_key__isnull', False), ('rate_key__isnull', False), _connector='OR')), name='jobs_job_claim_limited_idx'),
        ),
        migrations.RemoveIndex(
            model_name='job',
            name='jobs_job_claim_ready_idx',
        ),
        migrations.AddIndex(
            model_name='ratestart',
            index=models.Index(fields=['key', 'started_at'], name='jobs_ratestart_key_idx'),
        ),
        migrations.AddIndex(
            model_name='ratestart',
            index=models.Index(fields=['started_at'], name='jobs_ratestart_at_idx'),
        ),
    ]
