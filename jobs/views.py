from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from jobs import metrics as jobs_metrics
from jobs.health import health_report


@never_cache
# HEAD too: uptime monitors probe with it and would read 405 as "site down".
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Worker and queue health; 200 when the database answers, 503 when it does not."""
    report = health_report()
    return JsonResponse(report.body, status=200 if report.ok else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics; off unless METRICS_TOKEN or METRICS_ALLOWED_IPS is set."""
    allowed = jobs_metrics.access(request)
    if allowed == "disabled":
        raise Http404("metrics are off")
    if allowed == "forbidden":
        return HttpResponse("this address may not read the metrics\n", status=403)
    if allowed != "allowed":
        response = HttpResponse("a valid bearer token is required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(jobs_metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
