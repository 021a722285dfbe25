from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from jobs.health import health_report


@never_cache
# HEAD too: uptime monitors probe with it and would read 405 as "site down".
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Worker and queue health; 200 when the database answers, 503 when it does not."""
    report = health_report()
    return JsonResponse(report.body, status=200 if report.ok else 503)
