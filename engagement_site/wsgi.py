import logging
import os

from django.core import checks
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_site.settings")
application = get_wsgi_application()

# The system checks once at web start, as log lines (the cron commands skip them; `manage.py check` shows them all).
for message in checks.run_checks(include_deployment_checks=True):
    level = logging.ERROR if message.is_serious() else logging.WARNING
    logging.getLogger("engagement_site.checks").log(
        level, "system check", extra={"check": message.id, "detail": message.msg}
    )
