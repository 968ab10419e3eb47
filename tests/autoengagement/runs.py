"""What the daily-run tests share: the instant they run at, a config, an inactive customer, and the command run
with its JSON summary read back."""

import datetime as dt
import io
import json

from django.core.management import call_command

from notifications.models import NotificationLog
from tests.factories import AutoEngagementConfigFactory, BusinessFactory, CustomerFactory, WalletPassFactory

NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
Status = NotificationLog.Status


def make_config(**fields):
    fields.setdefault("channels", ["wallet", "email"])
    fields.setdefault(
        "message_template", {"header": "Hi {first_name}", "body": "{days_inactive} days at {business_name}"}
    )
    return AutoEngagementConfigFactory(business=BusinessFactory(name=fields.pop("name", "Bean Bar")), **fields)


def inactive(config, days=10, with_pass=True, **fields):
    member = CustomerFactory(
        business=config.business, last_activity_at=NOW - days * DAY, created_at=NOW - 400 * DAY, **fields
    )
    if with_pass:
        WalletPassFactory(customer=member)
    return member


def run(*args, now=NOW):
    out = io.StringIO()
    call_command("run_auto_engagement", "--now", now.isoformat(), "--format", "json", *args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])
