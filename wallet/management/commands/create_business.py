import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from django.db import transaction

from engagement_site.commands import validation_to_usage_error
from wallet.services import business_create, session_create


class Command(BaseCommand):
    help = "Create a business and open an API session for it; prints {business_id, session_token} as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--timezone", default="UTC", help="IANA zone name (default UTC).")

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                business = business_create(
                    name=options["name"],
                    email=options["email"],
                    password=options["password"],
                    timezone_name=options["timezone"],
                )
                _, token = session_create(business=business)
        except ValidationError as exc:
            raise validation_to_usage_error(exc) from exc
        self.stdout.write(json.dumps({"business_id": business.business_id, "session_token": token}))
