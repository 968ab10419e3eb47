"""gunicorn settings for the API and admin: `gunicorn -c deploy/gunicorn.conf.py engagement_site.wsgi`.

Each value comes from the environment (documented in .env.example); an empty one means the default."""

import multiprocessing
import os


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


bind = _env("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(_env("GUNICORN_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
threads = int(_env("GUNICORN_THREADS", "2"))
timeout = int(_env("GUNICORN_TIMEOUT", "30"))
accesslog = "-"
errorlog = "-"
access_log_format = '%(m)s %(U)s %(s)s %(B)s %(M)sms "%(a)s"'
# gunicorn's own lines (access log included) in the project's format: JSON lines with ISO 8601 UTC times when
# LOG_FORMAT=json, so one stream holds one format.
_log_format = _env("LOG_FORMAT", "text")
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "engagement_site.logging.ContextFormatter"},
        "json": {
            "()": "engagement_site.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": _log_format, "stream": "ext://sys.stdout"}},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1")
