"""What the notifications app announces, for the apps above it to react to (docs/architecture.md, "Signals")."""

from django.dispatch import Signal

# Sent with sender=Receipt, receipt= (notifications.receipts.Receipt) when a provider reports on a message it
# accepted: a Twilio StatusCallback (notifications.views.twilio_status) or an email tracking event (anymail's
# `tracking` signal, notifications.receivers). The app that keeps the results summary records it on the log row
# (autoengagement.services.receipts), in its own transaction; sent with `send`, so a receiver's error reaches the
# provider as a 5xx and the provider retries.
delivery_reported = Signal()
