from django.apps import AppConfig


class TablosConfig(AppConfig):
    name = "tablos"
    default_auto_field = "django.db.models.BigAutoField"
