from django.urls import path

from tablos import views

# tablos:detail (the tablo's page: its files) and tablos:upload are files views,
# declared in files.urls and added to this namespace by config/urls.py.
app_name = "tablos"
urlpatterns = [
    path("", views.tablo_list, name="list"),
    path("<uuid:tablo_id>/delete/", views.tablo_delete, name="delete"),
]
