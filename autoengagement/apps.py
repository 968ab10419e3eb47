from django.apps import AppConfig


class AutoengagementConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "autoengagement"
    verbose_name = "Auto-engagement"
