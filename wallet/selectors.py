"""Reads of customers, always scoped to one business."""

from django.db.models import Prefetch, QuerySet

from engagement_site.exceptions import ObjectNotFound
from wallet.models import Business, Customer, WalletPass


class CustomerNotFound(ObjectNotFound):
    default_message = "No such customer."


def customer_list(
    *, business: Business, email: str | None = None, phone: str | None = None, external_id: str | None = None
) -> QuerySet[Customer]:
    """The business's customers (not erased ones), newest first, with their passes in one extra query per page;
    each filter given keeps the exact matches (email ignoring case, phone in its E.164 form)."""
    queryset = Customer.objects.filter(business=business, erased_at__isnull=True)
    if email is not None:
        queryset = queryset.filter(email__iexact=email)
    if phone is not None:
        queryset = queryset.filter(phone=phone)
    if external_id is not None:
        queryset = queryset.filter(external_id=external_id)
    return queryset.prefetch_related(
        Prefetch("wallet_passes", queryset=WalletPass.objects.order_by("created_at", "id"))
    ).order_by("-created_at", "-id")


def customer_get(*, business: Business, customer_id: str) -> Customer:
    """One of the business's customers; another business's customer, or an erased one, is as absent as an unknown
    one."""
    customer = Customer.objects.filter(business=business, customer_id=customer_id, erased_at__isnull=True).first()
    if customer is None:
        raise CustomerNotFound()
    customer.business = business
    return customer
