"""Domain errors raised by services, and the one DRF exception handler that turns them into responses.

Services know nothing about HTTP: they raise the small exceptions below (or Django's ValidationError),
and `api_exception_handler` maps each kind to DRF's usual shapes and status codes.
"""

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    NON_FIELD_ERRORS,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

# Sent with every 401 (RFC 9110 requires a WWW-Authenticate header on it): the two ways to authenticate, an API key
# as a bearer token or the session header.
WWW_AUTHENTICATE = 'Bearer realm="api", X-Session-Token realm="api"'


class DomainError(Exception):
    """Base of the errors services raise on purpose. Each kind carries the HTTP status and the error code the API
    answers with, and `default_message` is what the client reads, so the handler needs no list of kinds."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def as_api_exception(self) -> exceptions.APIException:
        api_exception = exceptions.APIException(self.message, self.code)
        api_exception.status_code = self.status_code
        return api_exception


class ObjectNotFound(DomainError):
    """The object does not exist, or belongs to another business (the two are never told apart)."""

    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    default_message = "Not found."


class NotConfigured(DomainError):
    """A feature this server's operator has not configured (e.g. wallet certificates): 503, not a client error."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "not_configured"
    default_message = "This feature is not configured on this server."


class InvalidCredentials(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "invalid_credentials"
    default_message = "Invalid email or password."


def _request_too_big_message(exc: Exception) -> str:
    if isinstance(exc, RequestDataTooBig) and settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None:
        return f"The request body is too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    if isinstance(exc, TooManyFieldsSent) and settings.DATA_UPLOAD_MAX_NUMBER_FIELDS is not None:
        return f"Too many parameters: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}."
    return "The request is too large."


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        # Django's limits on what it reads of a request (DATA_UPLOAD_MAX_*), hit when DRF reads the body or the
        # query string. Django alone would answer an HTML 400 (a debug page with DEBUG on); here it is DRF's shape.
        # Still reported where Django reports it, without the traceback.
        logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
        return exceptions.ParseError(_request_too_big_message(exc))
    if isinstance(exc, DomainError):
        return exc.as_api_exception()
    if isinstance(exc, DjangoValidationError):
        detail = as_serializer_error(exc)
        if NON_FIELD_ERRORS in detail:
            detail[api_settings.NON_FIELD_ERRORS_KEY] = detail.pop(NON_FIELD_ERRORS)
        return exceptions.ValidationError(detail)
    return exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus our domain errors, Django's ValidationError and Django's request size limits; anything
    else stays a 500."""
    response = drf_exception_handler(_as_api_exception(exc), context)
    if response is None:
        return None
    if response.status_code == status.HTTP_401_UNAUTHORIZED and not response.has_header("WWW-Authenticate"):
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response
