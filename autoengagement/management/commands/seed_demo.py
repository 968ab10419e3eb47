from django.core.management.base import BaseCommand

from autoengagement.services.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo business, its auto-engagement config and a few hundred customers (idempotent)."

    def handle(self, *args, **options):
        seed = seed_demo()
        if seed.created:
            self.stdout.write(
                f"Created {seed.business.name} ({seed.business.business_id}) with {seed.customers} "
                f"customers and config {seed.config.config_id}."
            )
        else:
            self.stdout.write(
                f"Demo data already present: {seed.business.name} ({seed.business.business_id}), "
                f"{seed.customers} customers. Nothing created."
            )
        self.stdout.write(f"API login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
