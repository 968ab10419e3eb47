from django.core.management.base import BaseCommand

from devtools.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo
from engagement_site.commands import usage_error


class Command(BaseCommand):
    help = (
        "Create the demo business, its auto-engagement config and a few hundred customers (idempotent); with "
        "--simulate-days N, also play the last N days through the daily run and recorded visits."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--simulate-days",
            type=int,
            default=0,
            help="Create the customers as of N days ago and simulate the days since (runs and visits).",
        )

    def handle(self, *args, **options):
        days = options["simulate_days"]
        if not 0 <= days <= 120:
            raise usage_error("--simulate-days must be between 0 and 120")
        seed = seed_demo(simulate_days=days)
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
        if seed.simulation is not None:
            sim = seed.simulation
            self.stdout.write(
                f"Simulated {sim.runs} daily runs over the last {sim.days} days: {sim.reached} re-engagements "
                f"reached someone, {sim.holdout} held out, {sim.visits} visits recorded."
            )
        self.stdout.write(f"API login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
