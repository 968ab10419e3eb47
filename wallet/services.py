"""Writes for businesses and their API sessions."""

import datetime as dt
import hashlib
import logging
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from autoengagement.validation import timezone_errors
from wallet.models import Business, BusinessSession

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def business_create(*, name: str, email: str, password: str, timezone_name: str = "UTC") -> Business:
    """Create a business; every bad argument is reported at once as a ValidationError keyed by field."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["May not be empty."]
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
