from django.core.management.base import BaseCommand
from django.urls import reverse

from devtools.demo import DEMO_CUSTOMERS, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SEED, seed_demo
from engagement_site.commands import usage_error


class Command(BaseCommand):
    help = (
        "Create the demo business, its three-step journey and a few hundred customers (idempotent); with "
        "--simulate-days N, also play the last N days through the daily run and recorded visits. Deterministic: "
        "the same --seed and --customers give the same figures on a fresh database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--simulate-days",
            type=int,
            default=0,
            help="Create the customers as of N days ago and simulate the days since (runs and visits).",
        )
        parser.add_argument(
            "--customers", type=int, default=DEMO_CUSTOMERS, help=f"How many customers (default {DEMO_CUSTOMERS})."
        )
        parser.add_argument(
            "--seed", type=int, default=DEMO_SEED, help=f"The random generator's seed (default {DEMO_SEED})."
        )

    def handle(self, *args, **options):
        days = options["simulate_days"]
        if not 0 <= days <= 120:
            raise usage_error("--simulate-days must be between 0 and 120")
        if not 50 <= options["customers"] <= 100_000:
            raise usage_error("--customers must be between 50 and 100000")
        seed = seed_demo(simulate_days=days, customers=options["customers"], seed=options["seed"])
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
        config = seed.config
        if config.steps:
            self.stdout.write(
                f"Journey on {', '.join(config.channels)}, {config.holdout_percent}% held out, a visit within "
                f"{config.attribution_days} days of a step counts as a return:"
            )
            for number, step in enumerate(config.steps, start=1):
                self.stdout.write(f"  step {number} after {step['after_days']} quiet days: {_step_text(step)}")
        if seed.simulation is not None:
            sim = seed.simulation
            self.stdout.write(
                f"Simulated {sim.runs} daily runs over the last {sim.days} days: {sim.reached} re-engagements "
                f"reached someone, {sim.holdout} held out, {sim.visits} visits recorded."
            )
        self.stdout.write(f"API login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
        results = reverse("admin:autoengagement_autoengagementconfig_results", args=[config.pk])
        self.stdout.write(f"Admin results page (make serve, staff login): http://127.0.0.1:8000{results}")


def _step_text(step: dict) -> str:
    """A step's header, or each variant's with its weight."""
    if not step.get("variants"):
        return repr(step["message"]["header"])
    return ", ".join(
        f"variant {variant['name']} ({variant['weight']}%) {variant.get('message', step['message'])['header']!r}"
        for variant in step["variants"]
    )
