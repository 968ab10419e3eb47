"""Bulk writes of the platform API: customers upserted by external_id, and visits, up to MAX_ROWS a request.

Both are all or nothing: every row is checked first, any bad row is reported with its index and nothing is
written; then a fixed number of queries does the work whatever the number of rows (on PostgreSQL; SQLite splits a
long INSERT or UPDATE under its parameter limit, engagement_site.db).
"""

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework import status

from engagement_site import secure_ids
from engagement_site.db import bulk_insert_rows, bulk_update_rows, in_values, rows_by_key
from engagement_site.exceptions import DomainError
from engagement_site.secure_ids import IdKind
from wallet.models import Business, Customer
from wallet.services import record_visits, visit_time_errors

logger = logging.getLogger(__name__)

MAX_ROWS = 10_000

# The customer columns a bulk row may set, in the order they are written.
UPSERT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "push_token",
    "email_opt_out",
    "sms_opt_out",
    "push_opt_out",
    "attributes",
)
# What a new customer has for a column its row leaves out (as customer_create).
UPSERT_DEFAULTS: Mapping[str, Any] = {
    "first_name": "",
    "last_name": "",
    "email": "",
    "phone": "",
    "push_token": "",
    "email_opt_out": False,
    "sms_opt_out": False,
    "push_opt_out": False,
    "attributes": {},
}

RowErrors = list[dict[str, Any]]


class RowsInvalid(DomainError):
    """Some rows of a bulk request are wrong: `errors` is [{"index", "errors": {field: [messages]}}], in index
    order, and nothing was written."""

    def __init__(self, errors: RowErrors) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} invalid rows.")


class ConcurrentImport(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    default_message = (
        "Another request created customers with some of these external_ids meanwhile; nothing was written. Send "
        "the request again."
    )


@dataclass(frozen=True)
class UpsertResult:
    created: int
    updated: int


def duplicate_external_id_errors(external_ids: Sequence[str]) -> RowErrors:
    """A row whose external_id an earlier row of the same request has is an error (which values would win?)."""
    first_index: dict[str, int] = {}
    errors = []
    for index, external_id in enumerate(external_ids):
        if external_id in first_index:
            message = f"Also given in row {first_index[external_id]} of this request."
            errors.append({"index": index, "errors": {"external_id": [message]}})
        else:
            first_index[external_id] = index
    return errors


@transaction.atomic
def customers_upsert(
    *, business: Business, rows: Sequence[Mapping[str, Any]], now: dt.datetime | None = None
) -> UpsertResult:
    """Create or update `business`'s customers by external_id. `rows` were checked with the rules of a single
    create (wallet.api, one row at a time or its equivalent fast path) and have phones in E.164 form; each has an
    `external_id` and any of UPSERT_FIELDS. An existing customer changes only the fields its row gives (like
    PATCH); a new one gets the defaults for the others (like POST). No passes are issued.

    Four statements on PostgreSQL whatever the number of rows: the existing customers are found by external_id
    and then read and locked by primary key, the new ones inserted in one INSERT and the others rewritten (given
    fields merged over their current values) in one UPDATE; `updated` counts every existing customer a row names,
    even one whose values were already those (it is not rewritten). An erased customer has no external_id any
    more, so its external_id makes a new customer.
    """
    if errors := duplicate_external_id_errors([row["external_id"] for row in rows]):
        raise RowsInvalid(errors)
    if not rows:
        return UpsertResult(created=0, updated=0)
    now = now or timezone.now()
    existing = _lock_by_external_id(business, [row["external_id"] for row in rows])
    inserts: list[list[Any]] = []
    updates: list[list[Any]] = []
    matched = 0
    for row in rows:
        current = existing.get(row["external_id"])
        if current is None:
            inserts.append([row["external_id"], *(row.get(field, UPSERT_DEFAULTS[field]) for field in UPSERT_FIELDS)])
        else:
            pk, *values = current
            merged = [row.get(field, value) for field, value in zip(UPSERT_FIELDS, values, strict=True)]
            matched += 1
            if merged != values:  # a re-sync sends mostly unchanged customers: those are not rewritten
                updates.append([pk, *merged])
    if inserts:
        for values, customer_id in zip(inserts, secure_ids.make_ids(IdKind.CUSTOMER, len(inserts)), strict=True):
            values.insert(0, customer_id)
        inserted = bulk_insert_rows(
            Customer,
            ["customer_id", "external_id", *UPSERT_FIELDS],
            inserts,
            same={"business": business.pk, "created_at": now},
            returning=["pk"],
        )
        if len(inserted) != len(inserts):
            # A row skipped by ON CONFLICT DO NOTHING: someone else inserted its external_id after the SELECT above.
            raise ConcurrentImport()
    bulk_update_rows(Customer, list(UPSERT_FIELDS), updates)
    logger.info(
        "customers upserted",
        extra={
            "business_id": business.business_id,
            "customers_created": len(inserts),
            "customers_updated": len(updates),
        },
    )
    return UpsertResult(created=len(inserts), updated=matched)


@dataclass(frozen=True)
class VisitRow:
    """One visit of a bulk request, its customer named by exactly one of customer_id or external_id."""

    customer_id: str | None
    external_id: str | None
    occurred_at: dt.datetime | None


@dataclass(frozen=True)
class VisitsResult:
    recorded: int
    credited: int


UNKNOWN_CUSTOMER = "No such customer."


def visits_record(*, business: Business, rows: Sequence[VisitRow], now: dt.datetime | None = None) -> VisitsResult:
    """Record visits of `business`'s customers through wallet.services.record_visits, the path of the single
    activity endpoint, so they are credited to re-engagements exactly as one by one. A row naming a customer this
    business does not have (unknown, another business's, erased) or a time in the future is an error of its own
    index, and then nothing is recorded. `recorded` is the number of rows; `credited` the number of customers whose
    last activity moved forward (a visit older than the one on record changes nothing).

    Two SELECTs resolve the customers (by customer_id and by external_id), then record_visits' fixed queries."""
    now = now or timezone.now()
    by_customer_id = _pks_by_customer_id(business, {row.customer_id for row in rows if row.customer_id})
    by_external_id = _pks_by_external_id(business, {row.external_id for row in rows if row.external_id})
    errors: RowErrors = []
    visits: list[tuple[int, dt.datetime]] = []
    for index, row in enumerate(rows):
        row_errors: dict[str, list[str]] = {}
        if row.customer_id is not None:
            pk = by_customer_id.get(row.customer_id)
            if pk is None:
                row_errors["customer_id"] = [UNKNOWN_CUSTOMER]
        else:
            pk = by_external_id.get(row.external_id)
            if pk is None:
                row_errors["external_id"] = [UNKNOWN_CUSTOMER]
        occurred_at = row.occurred_at or now
        if messages := visit_time_errors(occurred_at, now):
            row_errors["occurred_at"] = messages
        if row_errors:
            errors.append({"index": index, "errors": row_errors})
        elif pk is not None:
            visits.append((pk, occurred_at))
    if errors:
        raise RowsInvalid(errors)
    moved = record_visits(business=business, visits=visits, now=now)
    return VisitsResult(recorded=len(visits), credited=moved)


def _lock_by_external_id(business: Business, external_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """external_id -> (pk, *UPSERT_FIELDS) of `business`'s customers with those external_ids, their rows locked.

    Found by the (business, external_id) index, then locked in primary-key order (as record_visits locks, so the two
    cannot deadlock) by primary key alone; a customer whose external_id changed in between (a PATCH, an erasure)
    is left out, and its external_id then makes a new customer or a ConcurrentImport."""
    pks = _pks_by_external_id(business, set(external_ids)).values()
    if not pks:
        return {}
    return {
        external_id: (pk, *values)
        for pk, external_id, business_pk, *values in Customer.objects.select_for_update()
        .filter(in_values(Customer, "pk", list(pks)))
        .order_by("pk")
        .values_list("pk", "external_id", "business_id", *UPSERT_FIELDS)
        if business_pk == business.pk and external_id is not None
    }


def _pks_by_external_id(business: Business, external_ids: set[str]) -> dict[str, int]:
    """external_id -> pk of `business`'s customers with one of `external_ids` (an erased customer has none), one
    probe of the (business, external_id) index each."""
    if not external_ids:
        return {}
    return dict(
        rows_by_key(Customer, {"business": business.pk}, "external_id", list(external_ids), ["external_id", "pk"])
    )


def _pks_by_customer_id(business: Business, customer_ids: set[str]) -> dict[str, int]:
    """customer_id -> pk of `business`'s customers (not erased) with one of `customer_ids`. customer_id is unique on
    its own: another business's customers are dropped here, not in SQL, where a condition on the business could make
    the planner scan the whole business."""
    if not customer_ids:
        return {}
    return {
        customer_id: pk
        for customer_id, pk, business_pk, erased_at in Customer.objects.filter(
            in_values(Customer, "customer_id", list(customer_ids))
        )
        .order_by()
        .values_list("customer_id", "pk", "business_id", "erased_at")
        if business_pk == business.pk and erased_at is None
    }
