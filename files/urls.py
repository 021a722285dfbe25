from django.urls import path

from files import views

app_name = "files"
urlpatterns = [
    path("<uuid:file_id>/download/", views.file_download, name="download"),
    path("<uuid:file_id>/preview/", views.file_preview, name="preview"),
    path("<uuid:file_id>/inline/", views.file_inline, name="inline"),
    path("<uuid:file_id>/delete/", views.file_delete, name="delete"),
]

# A tablo's page is its files and their upload form, so it is this app's view;
# config/urls.py mounts these under /tablos/ in the tablos namespace, under the
# names they always had (tablos:detail, tablos:upload).
tablo_urlpatterns = [
    path("<uuid:tablo_id>/", views.tablo_detail, name="detail"),
    path("<uuid:tablo_id>/files/", views.file_upload, name="upload"),
]

# /search/ (config/urls.py): the user's tablos and files by name; files sees both apps.
search_urlpatterns = [path("", views.search, name="search")]
