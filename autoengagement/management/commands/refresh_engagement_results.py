import datetime as dt
import json

from django.core.management.base import BaseCommand

from autoengagement.services import results
from engagement_site.commands import usage_error
from wallet.models import Business


def _date(option: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise usage_error(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Summarise re-engagement days for the stats. By default refreshes the stale days (those whose log rows "
        "changed since their summary; every run_auto_engagement invocation does this too). With --all, recomputes "
        "every day with log rows or a summary in the range: after log rows were written, edited or deleted outside "
        "the project's services."
    )

    def add_arguments(self, parser):
        parser.add_argument("--business", metavar="BUSINESS_ID", help="Only this business (default: every one).")
        parser.add_argument("--all", action="store_true", help="Every day, not only the stale ones.")
        parser.add_argument("--date-from", help="With --all: first run date, YYYY-MM-DD (default: the first).")
        parser.add_argument("--date-to", help="With --all: last run date, YYYY-MM-DD (default: the last).")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args, **options):
        date_from = _date("--date-from", options["date_from"])
        date_to = _date("--date-to", options["date_to"])
        if (date_from or date_to) and not options["all"]:
            raise usage_error("--date-from and --date-to need --all (stale days are refreshed whatever their date)")
        if date_from and date_to and date_from > date_to:
            raise usage_error("--date-to: must not be before --date-from")
        business_ids = None
        if options["business"]:
            business = Business.objects.filter(business_id=options["business"]).first()
            if business is None:
                raise usage_error(f"--business: unknown business {options['business']}")
            business_ids = [business.pk]
        if options["all"]:
            days = results.rebuild_results(business_ids=business_ids, date_from=date_from, date_to=date_to)
        else:
            days = results.refresh_stale_days(business_ids=business_ids)
        if options["format"] == "json":
            self.stdout.write(json.dumps({"days_refreshed": days}))
        else:
            self.stdout.write(f"{days} results days refreshed")
