from django.apps import AppConfig
from django.core import checks


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from anymail.signals import tracking

        from notifications import receivers
        from notifications.checks import anymail_webhook_check, channel_backends_check
        from wallet import signals

        checks.register(channel_backends_check)
        checks.register(anymail_webhook_check)
        # An ESP's bounces, complaints and deliveries, posted to anymail's tracking webhook (docs/channels.md).
        tracking.connect(receivers.report_anymail_tracking, dispatch_uid="notifications.anymail_tracking")
        # Wallet announces, notifications react: the imports point one way (docs/architecture.md, "Signals").
        signals.customer_erased.connect(
            receivers.anonymise_erased_customer_logs, dispatch_uid="notifications.anonymise_erased_logs"
        )
