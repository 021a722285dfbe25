"""A URLconf for tests: a view that enqueues a Django ``@task``, as a project's view would
(Tablo's own views hand work off with ``async_task``)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from tests.support import django_tasks


def enqueue_add(request: HttpRequest) -> JsonResponse:
    result = django_tasks.add.enqueue(2, 3)
    return JsonResponse({"id": result.id})


urlpatterns = [path("enqueue-add/", enqueue_add)]
