"""Which backend serves each channel: a setting per channel, an alias or a dotted path (like EMAIL_BACKEND)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from notifications.backends.base import ChannelBackend
from notifications.channels import Channel

RECORD = "notifications.backends.record.RecordBackend"
WALLET_LIVE = "notifications.backends.wallet.WalletBackend"

ALIASES: dict[str, dict[str, str]] = {
    Channel.WALLET: {"record": RECORD, "live": WALLET_LIVE},
    Channel.EMAIL: {"record": RECORD, "django": "notifications.backends.email.DjangoEmailBackend"},
    Channel.SMS: {"record": RECORD, "twilio": "notifications.backends.twilio.TwilioSmsBackend"},
    Channel.PUSH: {"record": RECORD, "fcm": "notifications.backends.fcm.FcmPushBackend"},
}

SETTING_NAMES = {
    Channel.WALLET: "WALLET_CHANNEL",
    Channel.EMAIL: "EMAIL_CHANNEL",
    Channel.SMS: "SMS_CHANNEL",
    Channel.PUSH: "PUSH_CHANNEL",
}


def backend_path(channel: str) -> str:
    choice = getattr(settings, SETTING_NAMES[Channel(channel)])
    return ALIASES[Channel(channel)].get(choice, choice)


def get_backend(channel: str) -> ChannelBackend:
    path = backend_path(channel)
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        known = ", ".join(ALIASES[Channel(channel)])
        raise ImproperlyConfigured(
            f"{SETTING_NAMES[Channel(channel)]}={path!r} is neither a known backend ({known}) nor an importable class."
        ) from exc
    return backend_class(channel=channel)
