"""Business authentication on every business endpoint: an API key (`Authorization: Bearer <key>`), or a session
(`X-Session-Token` plus `X-Business-Id`).

`authenticate()` returns `(business, credential)`, so views read the business as `request.user` and the API key or
session as `request.auth`. Unknown, expired and revoked credentials are a 401; a valid one for another business than
`X-Business-Id` is a 403 (with a key, `X-Business-Id` is optional).
"""

import hmac
import logging

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from engagement_site.exceptions import WWW_AUTHENTICATE
from wallet.api_keys import api_key_authenticate
from wallet.idempotency import IdempotentPostMixin
from wallet.models import ApiKey, Business, BusinessSession
from wallet.tokens import hash_token

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Session-Token"
BUSINESS_HEADER = "X-Business-Id"
BEARER = "bearer"


def _check_business(request: Request, business: Business, credential: str) -> None:
    """A 403 when X-Business-Id names another business than the credential's."""
    business_id = request.headers.get(BUSINESS_HEADER)
    if business_id is not None and not hmac.compare_digest(business_id.encode(), business.business_id.encode()):
        logger.warning(f"{credential} used for another business", extra={"business_id": business.business_id})
        raise exceptions.PermissionDenied(f"This {credential} does not belong to the business in {BUSINESS_HEADER}.")


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` (wallet.api_keys). Without that header it steps aside for the session headers."""

    def authenticate(self, request: Request) -> tuple[Business, ApiKey] | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != BEARER:
            return None
        key = key.strip()
        api_key = api_key_authenticate(key) if key and len(key) <= 200 else None
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        _check_business(request, api_key.business, "API key")
        return api_key.business, api_key

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class BusinessSessionAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Business, BusinessSession] | None:
        token = request.headers.get(TOKEN_HEADER)
        if token is None:
            return None
        if not token:
            raise exceptions.AuthenticationFailed("Invalid session token.")
        token_hash = hash_token(token)
        session = BusinessSession.objects.select_related("business").filter(token_hash=token_hash).first()
        # The lookup is by hash; the constant-time comparison keeps the check itself free of timing leaks.
        if session is None or not hmac.compare_digest(session.token_hash, token_hash):
            raise exceptions.AuthenticationFailed("Invalid session token.")
        if session.revoked:
            raise exceptions.AuthenticationFailed("This session has been revoked; log in again.")
        if session.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed("This session has expired; log in again.")
        if not request.headers.get(BUSINESS_HEADER):
            raise exceptions.AuthenticationFailed(f"The {BUSINESS_HEADER} header is required.")
        _check_business(request, session.business, "session")
        return session.business, session

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class IsBusinessAuthenticated(BasePermission):
    """Lets a request through only when an API key or a session identified a business."""

    message = (
        f"Authentication credentials were not provided: send Authorization: Bearer <API key>, or {TOKEN_HEADER} "
        f"and {BUSINESS_HEADER}."
    )

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, Business) and isinstance(request.auth, ApiKey | BusinessSession)


class BusinessSessionRequired(IdempotentPostMixin):
    """Mix into a business endpoint's view: authenticated by API key or session, for the business that owns it; its
    POSTs honour Idempotency-Key (wallet.idempotency)."""

    authentication_classes = (ApiKeyAuthentication, BusinessSessionAuthentication)
    permission_classes = (IsBusinessAuthenticated,)


class BusinessSessionScheme(OpenApiAuthenticationExtension):
    target_class = BusinessSessionAuthentication
    name = ["SessionToken", "BusinessId"]

    def get_security_definition(self, auto_schema: object) -> list[dict[str, str]]:
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": TOKEN_HEADER,
                "description": "The session_token returned by POST /api/auth/login.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": BUSINESS_HEADER,
                "description": "The business_id the session belongs to, e.g. biz_DemoCoffeeRoasters01.",
            },
        ]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from POST /api/api-keys, as Authorization: Bearer <key>.",
        }
