import json
from dataclasses import asdict

from django.core.management.base import BaseCommand

from autoengagement.api import StatsQuerySerializer, StatsSerializer
from autoengagement.stats import StepResult, Uplift, best_variant, engagement_stats
from engagement_site.commands import usage_error
from wallet.models import Business


class Command(BaseCommand):
    help = (
        "Print the results JSON of GET /api/auto-engagement/stats for one business (or, without --business, all "
        "businesses with days in UTC): a one-line summary (then, with journeys, a block per step with a line per "
        "variant and the best one's difference from the first), or with --format json the API's JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("--business", metavar="BUSINESS_ID", help="Default: every business.")
        parser.add_argument("--date-from", help="First local date, YYYY-MM-DD (default: 30 days before date-to).")
        parser.add_argument("--date-to", help="Last local date, YYYY-MM-DD (default: today).")
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args, **options):
        query = StatsQuerySerializer(
            data={
                key: options[name]
                for key, name in (("date_from", "date_from"), ("date_to", "date_to"))
                if options[name]
            }
        )
        if not query.is_valid():
            raise usage_error("; ".join(f"--{f.replace('_', '-')}: {' '.join(m)}" for f, m in query.errors.items()))
        business = None
        if options["business"]:
            business = Business.objects.filter(business_id=options["business"]).first()
            if business is None:
                raise usage_error(f"--business: unknown business {options['business']}")
        result = engagement_stats(business=business, **query.validated_data)
        if options["format"] == "json":
            self.stdout.write(json.dumps(StatsSerializer(asdict(result)).data))
            return
        rates = result.reactivation_rate
        summary = (
            f"{result.date_from} to {result.date_to} ({result.timezone}): {result.reached} reached, "
            f"{result.reactivated['reached']} came back ({_percent(rates['reached'])}); {result.holdout} held out, "
            f"{result.reactivated['holdout']} came back ({_percent(rates['holdout'])}); uplift "
        )
        if result.uplift is None:
            summary += "n/a (a group is empty)"
        else:
            u = result.uplift
            summary += f"{u.estimate * 100:+.1f} points, 95% CI {u.ci95_low * 100:+.1f} to {u.ci95_high * 100:+.1f}"
        self.stdout.write(summary)
        for step in result.steps or []:
            self.stdout.write(_step_text(step))


def _step_text(step: StepResult) -> str:
    """A step's variants, one line each: counts and rate, the difference from the holdout group and from the
    step's first variant, the best one marked (autoengagement.stats.best_variant)."""
    best = best_variant(step)
    first = _label(step.variants[0].name) if step.variants else ""
    lines = [f"step {step.step}:"]
    for index, variant in enumerate(step.variants):
        line = (
            f"  {_label(variant.name)}: {variant.reached} reached, {variant.reactivated} came back "
            f"({_percent(variant.rate)}); vs holdout {_points(variant.uplift)}; "
        )
        line += "first variant" if index == 0 else f"vs {first} {_points(variant.vs_first)}"
        if variant.name == best:
            line += " [best]"
        lines.append(line)
    if best is not None:
        lines.append(_verdict(step, best))
    return "\n".join(lines)


def _verdict(step: StepResult, best: str) -> str:
    """The step's best variant in one line: its difference from the first variant with the interval, or, when the
    first is best, that every other lies below it."""
    first = step.variants[0]
    if best == first.name:
        return f"  best: {_label(best)}, above every other variant (each one's 95% CI against it lies below zero)"
    vs_first = next(variant.vs_first for variant in step.variants if variant.name == best)
    return (
        f"  best: {_label(best)}, {vs_first.estimate * 100:+.1f} points over {_label(first.name)} "
        f"(95% CI {vs_first.ci95_low * 100:+.1f} to {vs_first.ci95_high * 100:+.1f})"
    )


def _label(name: str) -> str:
    return name or "(no variant)"


def _points(difference: Uplift | None) -> str:
    if difference is None:
        return "n/a"
    return (
        f"{difference.estimate * 100:+.1f} points, 95% CI {difference.ci95_low * 100:+.1f} to "
        f"{difference.ci95_high * 100:+.1f}"
    )


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"
