"""System checks so operators learn about a channel that cannot deliver at deploy, not at the morning run.

notifications.W001  a channel still uses the `record` backend (sends nothing) while DEBUG is off.
notifications.W002  EMAIL_CHANNEL=django but EMAIL_URL selects a backend that does not send (console, ...).
notifications.E001  a channel setting names neither a known alias nor an importable backend class.
notifications.E002  the chosen backend's required settings are missing or unusable.
notifications.E003  with DEBUG off, a URL a live channel's protocol requires to be HTTPS is not (PUBLIC_BASE_URL for
                    email: RFC 8058 one-click unsubscribe; WALLET_WEB_SERVICE_URL for Apple Wallet: webServiceURL).
notifications.E004  EMAIL_BACKEND is an anymail backend but its tracking webhooks have no ANYMAIL_WEBHOOK_SECRET: anyone
                    could post bounces and complaints (which opt customers out). An error with DEBUG off, else a
                    warning (notifications.W004).
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from notifications.backends import ALIASES, RECORD, SETTING_NAMES, backend_path
from notifications.channels import Channel

# channel -> (setting, why it must be HTTPS), checked when the channel is live and DEBUG is off.
HTTPS_URLS = {
    Channel.EMAIL: ("PUBLIC_BASE_URL", "RFC 8058 requires an HTTPS List-Unsubscribe URI for one-click unsubscribe"),
    Channel.WALLET: ("WALLET_WEB_SERVICE_URL", "Apple Wallet only calls an HTTPS webServiceURL"),
}

NON_SENDING_EMAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
}


def channel_backends_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for channel, setting in SETTING_NAMES.items():
        choice = getattr(settings, setting)
        path = backend_path(channel)
        if path == RECORD:
            if not settings.DEBUG:
                live = ", ".join(alias for alias in ALIASES[channel] if alias != "record")
                choose = f"Choose a live backend ({live})" if live else f"Point {setting} at a live backend class"
                messages.append(
                    Warning(
                        f"{setting}=record: {channel} messages are only recorded, never sent.",
                        hint=f"{choose} in production, or drop '{channel}' from the configs' channels.",
                        obj=setting,
                        id="notifications.W001",
                    )
                )
            continue
        try:
            backend_class = import_string(path)
        except ImportError:
            messages.append(
                Error(
                    f"{setting}={choice!r} is neither a known backend ({', '.join(ALIASES[channel])}) "
                    "nor an importable class.",
                    obj=setting,
                    id="notifications.E001",
                )
            )
            continue
        configuration_errors = getattr(backend_class, "configuration_errors", None)
        for problem in configuration_errors() if configuration_errors else []:
            messages.append(Error(f"{setting}={choice}: {problem}", obj=setting, id="notifications.E002"))
        messages.extend(_https_errors(channel, setting, choice))
        if channel == Channel.EMAIL and not settings.DEBUG and settings.EMAIL_BACKEND in NON_SENDING_EMAIL_BACKENDS:
            messages.append(
                Warning(
                    f"{setting}={choice} but EMAIL_URL selects {settings.EMAIL_BACKEND}, which does not send.",
                    hint="Set EMAIL_URL to your SMTP server, e.g. smtp+tls://user:password@smtp.example.com:587.",
                    obj="EMAIL_URL",
                    id="notifications.W002",
                )
            )
    return messages


def anymail_webhook_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if not settings.EMAIL_BACKEND.startswith("anymail."):
        return []
    anymail = getattr(settings, "ANYMAIL", None) or {}
    if anymail.get("WEBHOOK_SECRET") or getattr(settings, "ANYMAIL_WEBHOOK_SECRET", ""):
        return []
    level, code = (Warning, "notifications.W004") if settings.DEBUG else (Error, "notifications.E004")
    return [
        level(
            f"EMAIL_BACKEND={settings.EMAIL_BACKEND} but ANYMAIL_WEBHOOK_SECRET is not set: the tracking webhooks "
            "under /anymail/ accept unauthenticated bounces and complaints, which opt customers out.",
            hint="Set ANYMAIL_WEBHOOK_SECRET to a random 'user:password' and put it in the ESP's webhook URL.",
            obj="ANYMAIL_WEBHOOK_SECRET",
            id=code,
        )
    ]


def _https_errors(channel: str, setting: str, choice: str) -> list[CheckMessage]:
    if settings.DEBUG or channel not in HTTPS_URLS:
        return []
    url_setting, why = HTTPS_URLS[channel]
    url = getattr(settings, url_setting, "")
    if not url or url.startswith("https://"):
        return []
    return [
        Error(
            f"{url_setting}={url!r} is not an https:// URL while {setting}={choice}.",
            hint=f"{why}; set it to this service's public HTTPS address.",
            obj=url_setting,
            id="notifications.E003",
        )
    ]
