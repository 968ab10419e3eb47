"""gunicorn settings for the API and admin: `gunicorn -c deploy/gunicorn.conf.py engagement_site.wsgi`.

Each value comes from the environment (documented in .env.example); an empty one means the default."""

import multiprocessing
import os

from engagement_site.logging import formatters


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
    "formatters": formatters(),
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": _log_format, "stream": "ext://sys.stdout"}},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
forwarded_allow_ips = _env("FORWARDED_ALLOW_IPS", "127.0.0.1")


# Request metrics from every worker (autoengagement.monitoring): with PROMETHEUS_MULTIPROC_DIR set, each worker
# writes its samples there; the directory is emptied when gunicorn starts and a dead worker's files are retired.
_metrics_dir = _env("PROMETHEUS_MULTIPROC_DIR", "")


def on_starting(server):
    if _metrics_dir:
        os.makedirs(_metrics_dir, exist_ok=True)
        for name in os.listdir(_metrics_dir):
            os.remove(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
