from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0005_job_state_created_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='QueuedJob',
            fields=[
            ],
            options={
                'verbose_name': 'queued task',
                'verbose_name_plural': 'queued tasks',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('jobs.job',),
        ),
    ]
