"""Database helpers shared by the apps' models."""

from django.db.models import Q


def prefix_check(field: str, prefix: str) -> Q:
    """A CHECK condition that a public-ID column carries its kind's prefix."""
    return Q(**{f"{field}__startswith": prefix})
