from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from jobs.health import health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Worker and queue health; 200 when the database answers, 503 when it does not."""
    report = health_report()
    return JsonResponse(report.body, status=200 if report.ok else 503)
