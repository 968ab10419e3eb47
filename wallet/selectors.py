"""Reads of customers, always scoped to one business."""

from django.db.models import Prefetch, QuerySet

from engagement_site.exceptions import ObjectNotFound
from wallet.models import Business, Customer, WalletPass


class CustomerNotFound(ObjectNotFound):
    default_message = "No such customer."


def customer_list(*, business: Business) -> QuerySet[Customer]:
    """The business's customers, newest first, with their passes in one extra query per page."""
    return (
        Customer.objects.filter(business=business)
        .prefetch_related(Prefetch("wallet_passes", queryset=WalletPass.objects.order_by("created_at", "id")))
        .order_by("-created_at", "-id")
    )


def customer_get(*, business: Business, customer_id: str) -> Customer:
    """One of the business's customers; another business's customer is as absent as an unknown one."""
    customer = Customer.objects.filter(business=business, customer_id=customer_id).first()
    if customer is None:
        raise CustomerNotFound()
    customer.business = business
    return customer
