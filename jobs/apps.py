from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Django's place for code that needs the models loaded: signal receivers,
        # system checks (registered by importing jobs.checks) and the jobs' modules.
        from jobs import cache, checks, schedules, tasks  # noqa: F401
        from jobs.engine import registry
        from jobs.failures import tasks as failure_tasks  # noqa: F401 (jobs.prune_history)

        # Each app declares its jobs in its own `tasks` module (jobs.engine.registry.job).
        # `startjob` writes jobs to an app's `jobs` package.
        autodiscover_modules("tasks", "jobs")
        registry.connect_signals()
        tasks.connect_signals()
        post_migrate.connect(cache.create_cache_table, sender=self, dispatch_uid="jobs.cache")
        # Code-declared schedules are synced after every migrate.
        schedules.connect_signals()
        if settings.TRACING_ENABLED:
            # Imported only when on: the SDK and the Django instrumentation take a second.
            from jobs import tracing

            tracing.connect()
