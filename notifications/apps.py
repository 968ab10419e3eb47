from django.apps import AppConfig
from django.core import checks


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from notifications import receivers
        from notifications.checks import channel_backends_check
        from wallet import signals

        checks.register(channel_backends_check)
        # Wallet announces, notifications react: the imports point one way (docs/architecture.md, "Signals").
        signals.customer_erased.connect(
            receivers.anonymise_erased_customer_logs, dispatch_uid="notifications.anonymise_erased_logs"
        )
