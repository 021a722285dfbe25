from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs import failures, runtime, schedules

        # Each app declares its jobs in its own `tasks` module (jobs.registry.job).
        autodiscover_modules("tasks")
        runtime.connect_signals()
        failures.connect_signals()
        # runtime (issue 4): code-declared schedules are synced after every migrate.
        schedules.connect_signals()
