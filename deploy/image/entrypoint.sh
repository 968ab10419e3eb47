#!/bin/sh
# The container image's entrypoint: one image, one command per role.
#
#   web [GUNICORN_ARGS...]   the API and admin: gunicorn -c deploy/gunicorn.conf.py engagement_site.wsgi
#   run [ARGS...]            manage.py run_auto_engagement ARGS (the CronJob every 15 minutes)
#   prune [ARGS...]          manage.py prune_notification_logs ARGS (the daily CronJob)
#   webhooks [ARGS...]       manage.py deliver_webhooks ARGS (the CronJob every minute)
#   prune-idempotency        manage.py prune_idempotency_keys (the CronJob hourly)
#   migrate [ARGS...]        manage.py migrate --noinput ARGS (the Job before each rollout)
#   anything else            exec'd as is (e.g. `python manage.py createsuperuser`, `sh`)
#
# The Python that runs is the first on PATH (the image puts its venv first). Every role is exec'd, so the
# process gets the signals Kubernetes sends (SIGTERM on shutdown) directly.
set -eu

cd "${APP_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"

if [ "$#" -eq 0 ]; then
    set -- web
fi
role=$1
case "$role" in
    web)
        shift
        exec gunicorn -c deploy/gunicorn.conf.py "$@" engagement_site.wsgi
        ;;
    run)
        shift
        exec python manage.py run_auto_engagement "$@"
        ;;
    prune)
        shift
        exec python manage.py prune_notification_logs "$@"
        ;;
    webhooks)
        shift
        exec python manage.py deliver_webhooks "$@"
        ;;
    prune-idempotency)
        shift
        exec python manage.py prune_idempotency_keys "$@"
        ;;
    migrate)
        shift
        exec python manage.py migrate --noinput "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
