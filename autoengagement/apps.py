from django.apps import AppConfig
from django.core import checks


class AutoengagementConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "autoengagement"
    verbose_name = "Auto-engagement"

    def ready(self) -> None:
        from autoengagement import receivers
        from autoengagement.checks import run_settings_check
        from notifications import signals as notification_signals
        from wallet import signals

        checks.register(run_settings_check)
        # Wallet announces, win-back reacts: the imports point one way (docs/architecture.md, "The layers").
        signals.visits_recorded.connect(receivers.credit_recorded_visits, dispatch_uid="autoengagement.credit_visits")
        signals.pass_fetched.connect(receivers.mark_fetched_pass_delivered, dispatch_uid="autoengagement.delivered")
        notification_signals.delivery_reported.connect(
            receivers.record_reported_delivery, dispatch_uid="autoengagement.receipts"
        )
