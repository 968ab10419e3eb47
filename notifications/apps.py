from django.apps import AppConfig
from django.core import checks


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from notifications.checks import channel_backends_check

        checks.register(channel_backends_check)
