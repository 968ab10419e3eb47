from django.apps import AppConfig
from django.core import checks


class AutoengagementConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "autoengagement"
    verbose_name = "Auto-engagement"

    def ready(self) -> None:
        from autoengagement.checks import run_settings_check

        checks.register(run_settings_check)
