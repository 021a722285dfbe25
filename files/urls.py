from django.urls import path

from files import views

app_name = "files"
urlpatterns = [
    path("<uuid:file_id>/download/", views.file_download, name="download"),
    path("<uuid:file_id>/delete/", views.file_delete, name="delete"),
]
