from django.urls import path

from tablos import views

app_name = "tablos"
urlpatterns = [
    path("", views.tablo_list, name="list"),
]
