from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tablos:list", permanent=False)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("jobs.urls")),
    path("tablos/", include("tablos.urls")),
    path("files/", include("files.urls")),
]

# A database outage is a 503 "try again" page, not a bare "Server Error (500)".
handler500 = "config.errors.server_error"
