from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import urls as accounts_urls
from files import urls as files_urls
from tablos import urls as tablos_urls

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="tablos:list", permanent=False)),
    # Sign-up and confirmation; Django's sign-in and reset views, the sign-in form and
    # the reset's sending replaced by the accounts app's.
    path("accounts/", include("accounts.urls")),
    path("accounts/", include(accounts_urls.auth_urlpatterns)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("jobs.urls")),
    # files depends on tablos, never the reverse: the tablo page and the upload,
    # both files views, join the tablos namespace here.
    path(
        "tablos/",
        include((tablos_urls.urlpatterns + files_urls.tablo_urlpatterns, tablos_urls.app_name)),
    ),
    path("files/", include("files.urls")),
    path("search/", include(files_urls.search_urlpatterns)),
]

# A database outage is a 503 "try again" page, not a bare "Server Error (500)".
handler500 = "config.errors.server_error"
