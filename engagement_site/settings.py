"""Settings, all read from the environment (and `.env` when present); see `.env.example`."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from engagement_site.logging import formatters as log_formatters

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
# Earlier keys still accepted when checking signatures (unsubscribe links) after SECRET_KEY is rotated.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])


def _env_or_default(cast, name: str, default):
    """An empty value (as `.env.example` leaves them) means the default, never "off"."""
    return cast(name, default=default) if env.str(name, default="") else default


# HTTPS (docs/operations.md). With DEBUG off the defaults are the secure ones, so `manage.py check
# --deploy` passes once ALLOWED_HOSTS and SECRET_KEY are real; each can still be turned off from the environment
# (e.g. SECURE_SSL_REDIRECT=false when the proxy already redirects).
SECURE_SSL_REDIRECT = _env_or_default(env.bool, "SECURE_SSL_REDIRECT", not DEBUG)
# Paths answered over plain HTTP too (regexes without the leading slash), e.g. a load balancer's health check.
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[])
SECURE_HSTS_SECONDS = _env_or_default(env.int, "SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_or_default(env.bool, "SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Preloading is a promise to browsers that is slow to undo: opt in deliberately.
SECURE_HSTS_PRELOAD = _env_or_default(env.bool, "SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = _env_or_default(env.bool, "SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _env_or_default(env.bool, "CSRF_COOKIE_SECURE", not DEBUG)
# Behind a TLS-terminating proxy: "HTTP_X_FORWARDED_PROTO,https" trusts that header (only if the proxy always
# sets it, overwriting what clients send). Off by default.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https.")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
# Origins (scheme://host) whose form posts are accepted, e.g. https://engage.example.com for the admin.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
USE_TZ = env.bool("USE_TZ", default=True)
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "wallet",
    "webhooks",
    "notifications",
    "autoengagement",
]
# The benchmarks and the demo (bench_auto_engagement, bench_stats, seed_demo): with DEBUG, or where an operator asks.
DEVTOOLS = _env_or_default(env.bool, "DEVTOOLS", DEBUG)
if DEVTOOLS:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # /healthz, /readyz and /metrics, answered before the host check and the HTTPS redirect (probes use the pod IP).
    "autoengagement.monitoring.ProbeMiddleware",
    "autoengagement.monitoring.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, API docs) from the app process itself: no other web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # /api/ paths in either slash form, and a JSON 404 for those that match no route.
    "engagement_site.middleware.ApiPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "engagement_site.urls"
WSGI_APPLICATION = "engagement_site.wsgi.application"
ASGI_APPLICATION = "engagement_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "engagement_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions serialise writers, which is how SQLite stands in for row locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA synchronous=NORMAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>` when set (else keep it off the public Ingress).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# Hashed, compressed files collected by `collectstatic` in production; plain app directories while developing.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["engagement_site.api.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "engagement_site.exceptions.api_exception_handler",
    # Reverse proxies in front of the app; 0 ignores X-Forwarded-For, so clients cannot fake their address.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Auto-engagement API",
    "DESCRIPTION": "Configure win-back messages for inactive customers and read their history.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "notifications.channels.Channel",
        "WalletPlatformEnum": "wallet.models.WalletPass.Platform",
        "WebhookEventTypeEnum": "webhooks.events.EVENT_TYPES",
    },
    "SERVE_AUTHENTICATION": [],
}

# Business API sessions.
BUSINESS_SESSION_TTL = env.int("BUSINESS_SESSION_TTL", default=14 * 24 * 3600)
# Login attempts per client address, in DRF's rate syntax ("10/min", "100/hour"); more are answered 429.
LOGIN_THROTTLE_RATE = env.str("LOGIN_THROTTLE_RATE", default="10/min")
PASSKIT_LOG_THROTTLE_RATE = env.str("PASSKIT_LOG_THROTTLE_RATE", default="30/min")

# One cache shared by every worker and host, so throttles count every attempt: Redis when REDIS_URL is set, else the
# database (its table is created by a migration); per-process memory only while developing.
REDIS_URL = env.str("REDIS_URL", default="")
CACHE_BACKEND = _env_or_default(env.str, "CACHE_BACKEND", "redis" if REDIS_URL else ("locmem" if DEBUG else "database"))
_CACHES = {
    "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    "database": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "engagement_cache"},
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
if CACHE_BACKEND not in _CACHES or (CACHE_BACKEND == "redis" and not REDIS_URL):
    raise ImproperlyConfigured("CACHE_BACKEND must be redis (with REDIS_URL), database or locmem.")
CACHES = {"default": _CACHES[CACHE_BACKEND]}

# The daily run.
DISABLE_AUTO_ENGAGEMENT = env.bool("DISABLE_AUTO_ENGAGEMENT", default=False)
AUTO_ENGAGEMENT_LEASE_SECONDS = env.int("AUTO_ENGAGEMENT_LEASE_SECONDS", default=900)
AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES = env.int("AUTO_ENGAGEMENT_MAX_LATENESS_MINUTES", default=180)
AUTO_ENGAGEMENT_CHUNK_SIZE = env.int("AUTO_ENGAGEMENT_CHUNK_SIZE", default=2000)
AUTO_ENGAGEMENT_SEND_WINDOW = env.int("AUTO_ENGAGEMENT_SEND_WINDOW", default=500)
# A business with more customers than this is split into parts of about this many, which several workers share.
AUTO_ENGAGEMENT_PART_SIZE = env.int("AUTO_ENGAGEMENT_PART_SIZE", default=50000)
AUTO_ENGAGEMENT_MAX_ATTEMPTS = env.int("AUTO_ENGAGEMENT_MAX_ATTEMPTS", default=3)
AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES = env.int("AUTO_ENGAGEMENT_RETRY_BACKOFF_MINUTES", default=15)
AUTO_ENGAGEMENT_BREAKER_THRESHOLD = env.int("AUTO_ENGAGEMENT_BREAKER_THRESHOLD", default=10)

# Webhooks (docs/api.md, "Webhooks"; delivered by `deliver_webhooks`, docs/operations.md).
# true: endpoints may be http and resolve to private, loopback or link-local addresses (tests, private deployments).
WEBHOOK_ALLOW_PRIVATE_URLS = _env_or_default(env.bool, "WEBHOOK_ALLOW_PRIVATE_URLS", False)
# One delivery attempt's limit (connection included); past it the attempt fails and is retried later.
WEBHOOK_TIMEOUT_SECONDS = _env_or_default(env.float, "WEBHOOK_TIMEOUT_SECONDS", 15.0)
# How long a deliverer owns the messages it claimed; a crashed deliverer's claims come back after it.
WEBHOOK_LEASE_SECONDS = _env_or_default(env.int, "WEBHOOK_LEASE_SECONDS", 300)
# Delivered and failed messages (with their attempts) are deleted this many days after the event.
WEBHOOK_RETENTION_DAYS = _env_or_default(env.int, "WEBHOOK_RETENTION_DAYS", 30)

# Channel backends: an alias (record, live, django, twilio, fcm) or a dotted path to a backend class.
WALLET_CHANNEL = env.str("WALLET_CHANNEL", default="record")
EMAIL_CHANNEL = env.str("EMAIL_CHANNEL", default="record")
SMS_CHANNEL = env.str("SMS_CHANNEL", default="record")
PUSH_CHANNEL = env.str("PUSH_CHANNEL", default="record")
RECORD_OUTBOX_SIZE = env.int("RECORD_OUTBOX_SIZE", default=10_000)


class _NotRead:
    """Stands in for `env` for a provider whose backend is not chosen: its settings keep their defaults and the
    environment is not read, so a stray or malformed value for a provider not in use cannot stop the service."""

    def __getattr__(self, cast_name: str):
        return lambda name, default: default


def _env_for(choice: str, alias: str) -> environ.Env | _NotRead:
    """`env` when the channel's setting chooses this provider by its alias or names a backend class (which may be
    this provider's or a subclass of it), else the stand-in that reads nothing."""
    return env if choice == alias or "." in choice else _NotRead()


_sms_env = _env_for(SMS_CHANNEL, "twilio")
_push_env = _env_for(PUSH_CHANNEL, "fcm")
_http_env = env if isinstance(_sms_env, environ.Env) or isinstance(_push_env, environ.Env) else _NotRead()

# Wallet channel (WALLET_CHANNEL=live). Read by the wallet backend when it opens, never at import, and only the
# platforms whose settings are present are used. Secrets (key password, key and credential files) have no default.
APPLE_PASS_TYPE_ID = env.str("APPLE_PASS_TYPE_ID", default="")
APPLE_TEAM_ID = env.str("APPLE_TEAM_ID", default="")
APPLE_PASS_CERT_FILE = env.str("APPLE_PASS_CERT_FILE", default="")
APPLE_PASS_KEY_FILE = env.str("APPLE_PASS_KEY_FILE", default="")
APPLE_PASS_KEY_PASSWORD = env.str("APPLE_PASS_KEY_PASSWORD", default="")
APPLE_WWDR_CERT_FILE = env.str("APPLE_WWDR_CERT_FILE", default="")
APPLE_PASS_IMAGES_DIR = env.str("APPLE_PASS_IMAGES_DIR", default="")
APNS_HOST = env.str("APNS_HOST", default="api.push.apple.com")
APNS_CA_FILE = env.str("APNS_CA_FILE", default="")
APNS_TIMEOUT = env.float("APNS_TIMEOUT", default=10.0)
APNS_CONCURRENCY = env.int("APNS_CONCURRENCY", default=200)
WALLET_WEB_SERVICE_URL = env.str("WALLET_WEB_SERVICE_URL", default="")
GOOGLE_WALLET_ISSUER_ID = env.str("GOOGLE_WALLET_ISSUER_ID", default="")
GOOGLE_WALLET_CREDENTIALS = env.str("GOOGLE_WALLET_CREDENTIALS", default="")
GOOGLE_WALLET_API_BASE = env.str("GOOGLE_WALLET_API_BASE", default="https://walletobjects.googleapis.com")
GOOGLE_WALLET_CLASS_ID = env.str("GOOGLE_WALLET_CLASS_ID", default="")
GOOGLE_WALLET_TIMEOUT = env.float("GOOGLE_WALLET_TIMEOUT", default=10.0)
GOOGLE_WALLET_NOTIFY_LIMIT = env.int("GOOGLE_WALLET_NOTIFY_LIMIT", default=3)
GOOGLE_WALLET_OVER_LIMIT = env.str("GOOGLE_WALLET_OVER_LIMIT", default="text")
GOOGLE_WALLET_MESSAGE_DAYS = env.int("GOOGLE_WALLET_MESSAGE_DAYS", default=14)
GOOGLE_WALLET_KEEP_MESSAGES = env.int("GOOGLE_WALLET_KEEP_MESSAGES", default=3)
# addMessage calls in flight at once (HTTP/2 streams on one connection), and calls a second over every process
# (Google's documented limit is 20 requests per second; 0 = no limit).
GOOGLE_WALLET_CONCURRENCY = env.int("GOOGLE_WALLET_CONCURRENCY", default=100)
GOOGLE_WALLET_RATE_LIMIT = env.float("GOOGLE_WALLET_RATE_LIMIT", default=20.0)
WALLET_MAX_RETRIES = env.int("WALLET_MAX_RETRIES", default=3)
WALLET_RETRY_BACKOFF = env.float("WALLET_RETRY_BACKOFF", default=0.5)

# Email (EMAIL_CHANNEL=django): Django's email framework, configured from EMAIL_URL.
_email_url = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(_email_url)
# An email service provider through django-anymail instead of SMTP (docs/channels.md, "Email through an ESP"):
# EMAIL_BACKEND names its backend (e.g. anymail.backends.postmark.EmailBackend) and overrides EMAIL_URL's; every
# ANYMAIL_* variable becomes the Django setting of that name, which anymail reads (ANYMAIL_POSTMARK_SERVER_TOKEN,
# ANYMAIL_WEBHOOK_SECRET "user:password" for its tracking webhooks). With one, the tracking webhooks are served under
# /anymail/ (engagement_site.urls) and their bounces and complaints reach the log (notifications.receipts).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or _email_url["EMAIL_BACKEND"]
EMAIL_THROUGH_ANYMAIL = EMAIL_BACKEND.startswith("anymail.")
if EMAIL_THROUGH_ANYMAIL:
    INSTALLED_APPS.append("anymail")
    vars().update({name: env.str(name) for name in sorted(os.environ) if name.startswith("ANYMAIL_")})
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="noreply@localhost")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
# The public https base URL of this service; one-click unsubscribe links in emails point under it.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")

# HTTP providers (Twilio, FCM): timeouts, retries and concurrency shared by all of them. Each provider's settings
# below are read from the environment only when its channel chooses it (see _env_for); otherwise they keep their
# defaults.
CHANNEL_HTTP_TIMEOUT = _http_env.float("CHANNEL_HTTP_TIMEOUT", default=10.0)
CHANNEL_HTTP_MAX_ATTEMPTS = _http_env.int("CHANNEL_HTTP_MAX_ATTEMPTS", default=4)
CHANNEL_HTTP_BACKOFF_BASE = _http_env.float("CHANNEL_HTTP_BACKOFF_BASE", default=0.5)
CHANNEL_HTTP_BACKOFF_MAX = _http_env.float("CHANNEL_HTTP_BACKOFF_MAX", default=30.0)
CHANNEL_HTTP_RETRY_AFTER_MAX = _http_env.float("CHANNEL_HTTP_RETRY_AFTER_MAX", default=60.0)
CHANNEL_HTTP_CONCURRENCY = _http_env.int("CHANNEL_HTTP_CONCURRENCY", default=200)

# SMS (SMS_CHANNEL=twilio). Credentials have no defaults; the backend refuses to open without them.
TWILIO_ACCOUNT_SID = _sms_env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = _sms_env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = _sms_env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = _sms_env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_BASE = _sms_env.str("TWILIO_API_BASE", default="https://api.twilio.com")
TWILIO_RATE_LIMIT = _sms_env.float("TWILIO_RATE_LIMIT", default=10.0)
SMS_MAX_SEGMENTS = _sms_env.int("SMS_MAX_SEGMENTS", default=10)

# Push (PUSH_CHANNEL=fcm): Firebase Cloud Messaging HTTP v1 with a service account.
FCM_PROJECT_ID = _push_env.str("FCM_PROJECT_ID", default="")
FCM_CREDENTIALS = _push_env.str("FCM_CREDENTIALS", default="")
FCM_API_BASE = _push_env.str("FCM_API_BASE", default="https://fcm.googleapis.com")
FCM_RATE_LIMIT = _push_env.float("FCM_RATE_LIMIT", default=200.0)

LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT must be 'text' or 'json'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": log_formatters(),
    "filters": {"context": {"()": "engagement_site.logging.ContextFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own default handler would print its records a second time, unformatted.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.db.backends": {"level": "INFO"},
        # httpx (only the tests' independent client now) logs every request at INFO: noise.
        "httpx": {"level": "WARNING"},
    },
}
