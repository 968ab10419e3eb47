"""Business-session authentication: `X-Session-Token` plus `X-Business-Id` on every business endpoint.

`authenticate()` returns `(business, session)`, so views read the business as `request.user` and the
session as `request.auth`. Unknown, expired and revoked tokens are a 401; a valid token for another
business than `X-Business-Id` is a 403.
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
from wallet.models import Business, BusinessSession
from wallet.tokens import hash_token

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Session-Token"
BUSINESS_HEADER = "X-Business-Id"


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
        business_id = request.headers.get(BUSINESS_HEADER)
        if not business_id:
            raise exceptions.AuthenticationFailed(f"The {BUSINESS_HEADER} header is required.")
        if not hmac.compare_digest(business_id.encode(), session.business.business_id.encode()):
            logger.warning(
                "session used for another business",
                extra={"business_id": session.business.business_id, "session_id": session.pk},
            )
            raise exceptions.PermissionDenied(f"This session does not belong to the business in {BUSINESS_HEADER}.")
        return session.business, session

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class IsBusinessAuthenticated(BasePermission):
    """Lets a request through only when BusinessSessionAuthentication identified a business."""

    message = f"Authentication credentials were not provided: send {TOKEN_HEADER} and {BUSINESS_HEADER}."

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, Business) and isinstance(request.auth, BusinessSession)


class BusinessSessionRequired:
    """Mix into a business endpoint's view: authenticated by session, for the business that owns it."""

    authentication_classes = (BusinessSessionAuthentication,)
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
