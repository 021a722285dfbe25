from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import cache, failures, schedules
        from jobs.engine import djangoq, runtime

        # Each app declares its jobs in its own `tasks` module (jobs.engine.registry.job).
        # `startjob` writes jobs to an app's `jobs` package.
        autodiscover_modules("tasks", "jobs")
        runtime.connect_signals()
        djangoq.install()
        post_migrate.connect(cache.create_cache_table, sender=self, dispatch_uid="jobs.cache")
        failures.connect_signals()
        # Code-declared schedules are synced after every migrate;
        # importing jobs.checks registers the worker's system checks.
        schedules.connect_signals()
        from jobs import checks  # noqa: F401
