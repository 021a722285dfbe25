from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.scaffold import Limits, ScaffoldError, plan_job, write


class Command(BaseCommand):
    help = "Write a new job module (<app>/jobs/<name>.py) and a test that runs it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("app", help="label of an installed app of this project")
        parser.add_argument("name", help="the job's function name, a lowercase identifier")
        parser.add_argument(
            "--transactional",
            action="store_true",
            help="its database writes commit with the task's completion (applied once)",
        )
        parser.add_argument(
            "--django-task",
            action="store_true",
            help="a Django @task (django.tasks) instead of a Tablo @job, on the same queue",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            metavar="N",
            help="at most N of its tasks running at once, across every node",
        )
        parser.add_argument(
            "--per-key",
            action="store_true",
            help="the --concurrency limit applies per value of the job's first argument",
        )
        parser.add_argument(
            "--rate", metavar="N/SECONDS", help="at most N starts in any SECONDS, e.g. 100/10"
        )
        parser.add_argument(
            "--expires",
            type=float,
            metavar="SECONDS",
            help="a task not started this long after its enqueue ends expired, never run",
        )

    def handle(self, *args: Any, app: str, name: str, **options: Any) -> None:
        try:
            scaffold = plan_job(
                app_label=app,
                name=name,
                transactional=options.get("transactional", False),
                django_task=options.get("django_task", False),
                limits=Limits(
                    concurrency=options.get("concurrency"),
                    per_key=options.get("per_key", False),
                    rate=options.get("rate"),
                    expires=options.get("expires"),
                ),
            )
        except ScaffoldError as exc:
            raise CommandError(str(exc)) from exc
        for path in write(scaffold):
            self.stdout.write(f"created {path.relative_to(settings.BASE_DIR)}")
        if options.get("django_task"):
            module, _, func = scaffold.job_name.rpartition(".")
            self.stdout.write(
                f"task {scaffold.job_name!r} runs on qcluster; enqueue it with "
                f"from {module} import {func}; {func}.enqueue(...)"
            )
            return
        self.stdout.write(
            f"job {scaffold.job_name!r} is registered on the next start; enqueue it with "
            f'jobs.engine.registry.enqueue("{scaffold.job_name}", ...)'
        )
