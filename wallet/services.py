"""Writes for businesses, their API sessions and their customers."""

import datetime as dt
import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from engagement_site.db import bulk_update_rows, in_values
from engagement_site.exceptions import InvalidCredentials
from engagement_site.validation import timezone_errors
from wallet.models import Business, BusinessSession, Customer, IdempotencyRecord, WalletPass
from wallet.passes import authentication_token
from wallet.selectors import CustomerNotFound
from wallet.signals import Visit, customer_erased, visits_recorded
from wallet.tokens import hash_token
from wallet.validation import attributes_errors, normalise_phone, phone_errors

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8


def business_create(*, name: str, email: str, password: str, timezone_name: str = "UTC") -> Business:
    """Create a business; every bad argument is reported at once as a ValidationError keyed by field."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["May not be empty."]
    elif "\x00" in name:
        errors["name"] = ["May not contain null characters."]
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = ["Enter a valid email address."]
    else:
        if Business.objects.filter(email__iexact=email).exists():
            errors["email"] = ["A business with this email already exists."]
    if len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = [f"Must have at least {MIN_PASSWORD_LENGTH} characters."]
    if tz_errors := timezone_errors(timezone_name):
        errors["timezone"] = tz_errors
    if errors:
        raise ValidationError(errors)
    business = Business(name=name.strip(), email=email.lower(), timezone=timezone_name)
    business.set_password(password)
    business.save()
    logger.info("business created", extra={"business_id": business.business_id})
    return business


@transaction.atomic
def session_create(*, business: Business, now: dt.datetime | None = None) -> tuple[BusinessSession, str]:
    """Open an API session; the raw token is returned once and only its hash is stored."""
    token = secrets.token_urlsafe(32)
    now = now or timezone.now()
    session = BusinessSession.objects.create(
        business=business,
        token_hash=hash_token(token),
        expires_at=now + dt.timedelta(seconds=settings.BUSINESS_SESSION_TTL),
    )
    return session, token


def session_login(*, email: str, password: str, now: dt.datetime | None = None) -> tuple[BusinessSession, str]:
    """Check a business's password and open a session; unknown email and wrong password fail alike."""
    business = Business.objects.filter(email__iexact=email.strip()).order_by("pk").first()
    if business is None:
        # Hash anyway, so the response time does not tell which emails have an account.
        make_password(password)
        logger.info("login failed", extra={"reason": "unknown email"})
        raise InvalidCredentials()
    if not business.check_password(password):
        logger.info("login failed", extra={"business_id": business.business_id, "reason": "wrong password"})
        raise InvalidCredentials()
    session, token = session_create(business=business, now=now)
    logger.info("login", extra={"business_id": business.business_id, "session_id": session.pk})
    return session, token


def session_revoke(*, session: BusinessSession) -> None:
    """Log out: the token stops working at once, and the row stays for the audit trail."""
    BusinessSession.objects.filter(pk=session.pk).update(revoked=True)
    session.revoked = True
    logger.info("logout", extra={"business_id": session.business.business_id, "session_id": session.pk})


CUSTOMER_EDITABLE_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "push_token",
        "email_opt_out",
        "sms_opt_out",
        "push_opt_out",
        "attributes",
        "external_id",
    }
)


def _customer_validate(customer: Customer) -> None:
    """The model's own checks (lengths, email) plus the phone number and the attributes, all reported at once; the
    phone is then stored in its E.164 form."""
    errors: dict[str, list[str]] = {}
    try:
        customer.full_clean(exclude={"business"}, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = exc.update_error_dict(errors)
    if messages := phone_errors(customer.phone):
        errors.setdefault("phone", []).extend(messages)
    if messages := attributes_errors(customer.attributes):
        errors.setdefault("attributes", []).extend(messages)
    if customer.external_id == "":
        errors.setdefault("external_id", []).append("May not be empty; send null for none.")
    elif (
        customer.external_id is not None
        and "external_id" not in errors
        and Customer.objects.filter(business_id=customer.business_id, external_id=customer.external_id)
        .exclude(pk=customer.pk)
        .exists()
    ):
        errors["external_id"] = ["Another customer of this business has this external_id."]
    if errors:
        raise ValidationError(errors)
    customer.phone = normalise_phone(customer.phone)


def _save_unique(customer: Customer, update_fields: list[str] | None = None) -> None:
    """Save; another request that took the same external_id since _customer_validate looked is a 400, not a 500."""
    try:
        with transaction.atomic():
            customer.save(update_fields=update_fields)
    except IntegrityError as exc:
        if "external_id" not in str(exc):
            raise
        raise ValidationError({"external_id": ["Another customer of this business has this external_id."]}) from exc


@transaction.atomic
def customer_create(
    *,
    business: Business,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    phone: str = "",
    push_token: str = "",
    email_opt_out: bool = False,
    sms_opt_out: bool = False,
    push_opt_out: bool = False,
    attributes: Mapping[str, str | int | float] | None = None,
    external_id: str | None = None,
    wallet_platform: str | None = None,
    now: dt.datetime | None = None,
) -> Customer:
    """Create a customer (not yet active: the activity service records visits) and, if asked, their pass."""
    customer = Customer(
        business=business,
        first_name=first_name,
        last_name=last_name,
        email=email,
        phone=phone,
        push_token=push_token,
        email_opt_out=email_opt_out,
        sms_opt_out=sms_opt_out,
        push_opt_out=push_opt_out,
        attributes={} if attributes is None else attributes,
        external_id=external_id,
        created_at=now or timezone.now(),
    )
    _customer_validate(customer)
    if wallet_platform is not None and wallet_platform not in WalletPass.Platform.values:
        raise ValidationError({"wallet_platform": [f"Must be one of: {', '.join(WalletPass.Platform.values)}."]})
    _save_unique(customer)
    if wallet_platform is not None:
        wallet_pass_create(customer=customer, platform=wallet_platform)
    logger.info(
        "customer created",
        extra={"business_id": business.business_id, "customer_id": customer.customer_id, "platform": wallet_platform},
    )
    return customer


def wallet_pass_create(*, customer: Customer, platform: str) -> WalletPass:
    """A pass for the customer. Its Apple web-service token is derived from the pass_id (see
    wallet.passes.authentication_token) so it can be written into every regenerated pass; only its hash is kept."""
    wallet_pass = WalletPass(customer=customer, platform=platform)
    wallet_pass.authentication_token_hash = hash_token(authentication_token(pass_id=wallet_pass.pass_id))
    wallet_pass.save()
    return wallet_pass


@transaction.atomic
def customer_update(*, customer: Customer, data: Mapping[str, Any]) -> Customer:
    """Change only the given fields (names, addresses, push token, per-channel consent, attributes). `attributes`
    replaces the whole object: names it does not give are removed."""
    unknown = sorted(set(data) - CUSTOMER_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({field: ["This field cannot be changed."] for field in unknown})
    update_fields = list(data)
    if customer.sms_undeliverable_phone and data.get("phone", customer.phone) != customer.sms_undeliverable_phone:
        # A delivery receipt said the old number cannot receive texts; the new one is not known to (and the old
        # number is not kept). The SMS channel only skips while phone equals the mark, so this is tidiness.
        customer.sms_undeliverable_phone = customer.sms_undeliverable_reason = ""
        update_fields += ["sms_undeliverable_phone", "sms_undeliverable_reason"]
    for field, value in data.items():
        setattr(customer, field, value)
    _customer_validate(customer)
    _save_unique(customer, update_fields=update_fields)
    logger.info(
        "customer updated",
        extra={
            "business_id": customer.business.business_id,
            "customer_id": customer.customer_id,
            "fields": sorted(data),
        },
    )
    return customer


ERASED_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "push_token",
    "sms_undeliverable_phone",
    "sms_undeliverable_reason",
)


@transaction.atomic
def customer_erase(*, customer: Customer, now: dt.datetime | None = None) -> None:
    """Erase the customer's personal data (the right to erasure) and keep an emptied row, so the notification log
    and the results that count it stay exact: names, email, phone, push token, attributes and external_id are
    cleared, the wallet passes are deleted with their Apple device registrations and Google message records (the
    PassKit web service then refuses the pass, so it stops updating), and `erased_at` is set: the API answers 404
    for the customer from then on and the daily run never selects them. Apps above hear of it through
    wallet.signals.customer_erased, in this transaction, and anonymise what they keep (notifications: the rendered
    messages of the customer's log rows). A fixed number of queries whatever the customer's history."""
    now = now or timezone.now()
    erased = (
        Customer.objects.filter(pk=customer.pk, erased_at__isnull=True).select_for_update().values_list("pk", flat=True)
    )
    if not list(erased):
        raise CustomerNotFound()
    WalletPass.objects.filter(customer_id=customer.pk).delete()
    # A kept Idempotency-Key answer may hold the customer as they were (POST /api/customers): it goes too.
    IdempotencyRecord.objects.filter(business=customer.business, response_body__contains=customer.customer_id).delete()
    Customer.objects.filter(pk=customer.pk).update(
        **dict.fromkeys(ERASED_TEXT_FIELDS, ""), attributes={}, external_id=None, erased_at=now
    )
    customer_erased.send(sender=Customer, business=customer.business, customer_pk=customer.pk)
    logger.info(
        "customer erased", extra={"business_id": customer.business.business_id, "customer_id": customer.customer_id}
    )


# Far enough from the first instant Python represents that the attribution window before a visit, and its local
# date anywhere, stay representable (closer, crediting the visit is an OverflowError).
EARLIEST_VISIT = dt.datetime(20, 1, 1, tzinfo=dt.UTC)


def visit_time_errors(occurred_at: dt.datetime, now: dt.datetime) -> list[str]:
    """What is wrong with `occurred_at` as the time of a visit reported at `now` (empty when it is fine)."""
    if timezone.is_naive(occurred_at):
        return ["Must include a UTC offset, e.g. 2026-03-01T09:30:00+01:00."]
    if occurred_at > now:
        return ["May not be in the future."]
    if occurred_at < EARLIEST_VISIT:
        return [f"May not be before {EARLIEST_VISIT.isoformat()}."]
    return []


@transaction.atomic
def record_visits(
    *,
    business: Business,
    visits: Sequence[tuple[Customer | int, dt.datetime]],
    now: dt.datetime | None = None,
) -> int:
    """Record many visits of `business`'s customers at once (an import, a point-of-sale batch); returns how many
    customers' last activity moved forward.

    A fixed number of queries whatever the batch size: the customers' rows are locked and read in one SELECT (so
    concurrent reports of the same customer queue up and each sees the previous visit), the visits that move a
    customer forward are announced in this transaction (wallet.signals.visits_recorded: win-back credits each to
    its spell's re-engagement, autoengagement.services.reactivation, in a fixed number of queries too), and the new
    last_activity_at values are written in one UPDATE. last_activity_at only moves forward: a visit older than the
    one on record changes nothing and is announced to no one. Customers of other businesses are ignored (left out
    here rather than in SQL, where a condition on the business could make the planner scan the whole business for
    a business its statistics do not know yet).
    """
    now = now or timezone.now()
    by_customer: dict[int, list[dt.datetime]] = defaultdict(list)
    for customer, occurred_at in visits:
        if errors := visit_time_errors(occurred_at, now):
            raise ValidationError({"occurred_at": errors})
        by_customer[customer.pk if isinstance(customer, Customer) else customer].append(occurred_at)
    if not by_customer:
        return 0
    current = {
        pk: last_activity_at
        for pk, business_pk, last_activity_at in Customer.objects.select_for_update()
        .filter(in_values(Customer, "pk", list(by_customer)))
        .order_by("pk")
        .values_list("pk", "business_id", "last_activity_at")
        if business_pk == business.pk
    }
    moves: list[Visit] = []
    for customer_pk, previous in current.items():
        for occurred_at in sorted(set(by_customer[customer_pk])):
            if previous is None or occurred_at > previous:
                moves.append(Visit(customer_pk=customer_pk, previous_activity_at=previous, occurred_at=occurred_at))
                previous = occurred_at
    visits_recorded.send(sender=Business, business=business, visits=moves)
    latest: dict[int, dt.datetime] = {}
    for visit in moves:
        latest[visit.customer_pk] = visit.occurred_at
    bulk_update_rows(Customer, ["last_activity_at"], list(latest.items()))
    logger.info(
        "visits recorded",
        extra={
            "business_id": business.business_id,
            "visits": len(visits),
            "moved_forward": len(latest),
        },
    )
    return len(latest)


def customer_record_activity(
    *, customer: Customer, occurred_at: dt.datetime | None = None, now: dt.datetime | None = None
) -> Customer:
    """Record a visit: the one entry point for "this customer came back", whoever reports it.

    The single-visit case of record_visits: last_activity_at only ever moves forward, and a visit that ends an
    inactivity spell is credited to that spell's re-engagement when it is within the attribution window.
    """
    now = now or timezone.now()
    occurred_at = occurred_at or now
    if errors := visit_time_errors(occurred_at, now):
        raise ValidationError({"occurred_at": errors})
    moved = record_visits(business=customer.business, visits=[(customer, occurred_at)], now=now)
    customer.refresh_from_db(fields=["last_activity_at"])
    logger.info(
        "customer activity recorded",
        extra={
            "business_id": customer.business.business_id,
            "customer_id": customer.customer_id,
            "moved_forward": bool(moved),
        },
    )
    return customer
