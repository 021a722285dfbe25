from django.urls import path

from files import views as file_views
from tablos import views

app_name = "tablos"
urlpatterns = [
    path("", views.tablo_list, name="list"),
    path("<uuid:tablo_id>/", views.tablo_detail, name="detail"),
    path("<uuid:tablo_id>/delete/", views.tablo_delete, name="delete"),
    path("<uuid:tablo_id>/files/", file_views.file_upload, name="upload"),
]
