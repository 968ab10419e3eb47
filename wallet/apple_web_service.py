"""Apple's PassKit web service: what Wallet on a device calls at the pass's webServiceURL.

Endpoints (under the path of WALLET_WEB_SERVICE_URL) and their answers, as Apple documents them:
- POST   v1/devices/<device>/registrations/<passType>/<serial>  register: 201 new, 200 already there, 401
- DELETE v1/devices/<device>/registrations/<passType>/<serial>  unregister: 200, 401
- GET    v1/devices/<device>/registrations/<passType>?passesUpdatedSince=<tag>  serials: 200 JSON, 204 none
- GET    v1/passes/<passType>/<serial>                            latest pass: 200 .pkpass, 304, 401
- POST   v1/log                                                   device logs: 200
A pass this service does not know (wrong pass type or serial) is a 404. Authenticated calls carry
`Authorization: ApplePass <authenticationToken>`. A malformed request (body, identifier, tag) is a 400, and a
server without its pass certificates answers 503.
"""

import datetime as dt
import json
import logging
import re
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import http_date, parse_http_date_safe
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from engagement_site.logging import escape_controls
from engagement_site.secure_ids import IdKind, is_valid_id
from wallet import passes
from wallet.models import AppleDeviceRegistration, WalletPass
from wallet.signals import pass_fetched
from wallet.throttling import DeviceLogRateThrottle

logger = logging.getLogger(__name__)

PUSH_TOKEN_RE = re.compile(r"[A-Za-z0-9]{1,256}")  # used with fullmatch: "$" would allow a final newline
# Device library identifiers are opaque, but printable and at most 128 characters (the column's size).
DEVICE_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")  # used with fullmatch
MAX_BODY_BYTES = 64 * 1024  # a registration is a push token; a device log a few lines
MAX_LOG_LINES = 50  # logged per request; the rest are counted
MAX_LOG_LINE_CHARS = 500
# Control characters (newlines forge log lines, escapes drive terminals), Unicode line and paragraph separators and
# bidirectional overrides; written to our logs as escapes.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@lru_cache(maxsize=4)
def _apple_config(_settings_key: tuple[str, ...]) -> passes.AppleConfig:
    return passes.load_apple_config()


def apple_config() -> passes.AppleConfig:
    """The parsed certificates, loaded once per distinct set of Apple settings rather than on every request."""
    key = tuple(
        getattr(settings, name)
        for name in (
            "APPLE_PASS_TYPE_ID",
            "APPLE_TEAM_ID",
            "APPLE_PASS_CERT_FILE",
            "APPLE_PASS_KEY_FILE",
            "APPLE_PASS_KEY_PASSWORD",
            "APPLE_WWDR_CERT_FILE",
            "WALLET_WEB_SERVICE_URL",
            "APPLE_PASS_IMAGES_DIR",
        )
    )
    return _apple_config(key)


def update_tag(*, moment: dt.datetime) -> str:
    """An opaque "lastUpdated" tag: microseconds since the epoch, exact for the database's timestamps."""
    return str((moment - _EPOCH) // dt.timedelta(microseconds=1))


def _parse_tag(tag: str) -> dt.datetime | None:
    """The moment of a tag from update_tag; None when it is not one (not ASCII digits, or past year 9999)."""
    if not (tag.isascii() and tag.isdigit() and len(tag) <= 18):
        return None
    try:
        return _EPOCH + dt.timedelta(microseconds=int(tag))
    except OverflowError:
        return None


def _json_body(request: HttpRequest) -> tuple[bool, Any]:
    """(True, the parsed JSON body) or (False, None) when it is too large, not JSON or nested too deeply."""
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY_BYTES:
            return False, None
        body = request.body
    except (ValueError, RequestDataTooBig):
        return False, None
    if len(body) > MAX_BODY_BYTES:
        return False, None
    try:
        return True, json.loads(body or b"{}")
    except (ValueError, RecursionError):  # ValueError: not UTF-8, not JSON
        return False, None


def _find_pass(*, pass_type_identifier: str, serial_number: str) -> WalletPass | None:
    if not settings.APPLE_PASS_TYPE_ID or pass_type_identifier != settings.APPLE_PASS_TYPE_ID:
        return None
    if not is_valid_id(serial_number, IdKind.PASS):  # e.g. a NUL, which PostgreSQL would refuse
        return None
    return (
        WalletPass.objects.select_related("customer__business")
        .filter(pass_id=serial_number, platform=WalletPass.Platform.APPLE)
        .first()
    )


def _authorized(*, request: HttpRequest, wallet_pass: WalletPass) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (
        scheme == "ApplePass"
        and bool(token)
        and passes.authentication_token_matches(wallet_pass=wallet_pass, token=token.strip())
    )


def _pass_or_error(
    *, request: HttpRequest, pass_type_identifier: str, serial_number: str
) -> tuple[WalletPass | None, HttpResponse | None]:
    wallet_pass = _find_pass(pass_type_identifier=pass_type_identifier, serial_number=serial_number)
    if wallet_pass is None:
        return None, HttpResponse(status=404)
    if not _authorized(request=request, wallet_pass=wallet_pass):
        logger.info("passkit request not authorized", extra={"pass_id": wallet_pass.pass_id})
        return None, HttpResponse(status=401)
    return wallet_pass, None


@csrf_exempt
@require_http_methods(["POST", "DELETE"])
def registration(
    request: HttpRequest, device_library_identifier: str, pass_type_identifier: str, serial_number: str
) -> HttpResponse:
    """Register a device for a pass's updates (POST) or stop them (DELETE)."""
    wallet_pass, error = _pass_or_error(
        request=request, pass_type_identifier=pass_type_identifier, serial_number=serial_number
    )
    if error:
        return error
    if not DEVICE_ID_RE.fullmatch(device_library_identifier):
        return HttpResponse(status=400)
    if request.method == "DELETE":
        AppleDeviceRegistration.objects.filter(
            wallet_pass=wallet_pass, device_library_identifier=device_library_identifier
        ).delete()
        logger.info("passkit device unregistered", extra={"pass_id": wallet_pass.pass_id})
        return HttpResponse(status=200)
    parsed, body = _json_body(request)
    if not parsed or not isinstance(body, dict):
        return HttpResponse(status=400)
    push_token = body.get("pushToken", "")
    if not isinstance(push_token, str) or not PUSH_TOKEN_RE.fullmatch(push_token):
        return HttpResponse(status=400)
    registration_row, created = AppleDeviceRegistration.objects.get_or_create(
        wallet_pass=wallet_pass,
        device_library_identifier=device_library_identifier,
        defaults={"push_token": push_token},
    )
    if not created and registration_row.push_token != push_token:
        registration_row.push_token = push_token
        registration_row.save(update_fields=["push_token"])
    logger.info("passkit device registered", extra={"pass_id": wallet_pass.pass_id, "new_registration": created})
    return HttpResponse(status=201 if created else 200)


@require_GET
def updated_serials(request: HttpRequest, device_library_identifier: str, pass_type_identifier: str) -> HttpResponse:
    """The serial numbers of this device's passes updated since the tag it got last time (all without a tag)."""
    if not settings.APPLE_PASS_TYPE_ID or pass_type_identifier != settings.APPLE_PASS_TYPE_ID:
        return HttpResponse(status=204)
    if not DEVICE_ID_RE.fullmatch(device_library_identifier):
        return HttpResponse(status=400)
    since_tag = request.GET.get("passesUpdatedSince", "")
    since = _parse_tag(since_tag) if since_tag else None
    if since_tag and since is None:
        return HttpResponse(status=400)
    updated = WalletPass.objects.filter(
        platform=WalletPass.Platform.APPLE, device_registrations__device_library_identifier=device_library_identifier
    )
    if since is not None:
        updated = updated.filter(updated_at__gt=since)
    rows = list(updated.values_list("pass_id", "updated_at"))
    if not rows:
        return HttpResponse(status=204)
    last_updated = max(updated_at for _, updated_at in rows)
    return JsonResponse(
        {"serialNumbers": sorted(pass_id for pass_id, _ in rows), "lastUpdated": update_tag(moment=last_updated)}
    )


@require_GET
def latest_pass(request: HttpRequest, pass_type_identifier: str, serial_number: str) -> HttpResponse:
    """The current signed pass, or 304 when the device's copy (If-Modified-Since) is current.

    Serving it announces the fetch (wallet.signals.pass_fetched): win-back marks the message it carries delivered."""
    wallet_pass, error = _pass_or_error(
        request=request, pass_type_identifier=pass_type_identifier, serial_number=serial_number
    )
    if error:
        return error
    last_modified = passes.pass_last_modified(wallet_pass=wallet_pass)
    last_modified_header = http_date(last_modified.timestamp())
    if_modified_since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    if if_modified_since is not None and last_modified.timestamp() <= if_modified_since:
        response = HttpResponse(status=304)
        response["Last-Modified"] = last_modified_header
        return response
    try:
        content = passes.build_pkpass(wallet_pass=wallet_pass, config=apple_config())
    except ImproperlyConfigured as exc:
        logger.error("passkit pass not served: %s", exc, extra={"pass_id": wallet_pass.pass_id})
        return HttpResponse(status=503)
    pass_fetched.send(sender=WalletPass, wallet_pass=wallet_pass)  # its wallet message is delivered
    response = HttpResponse(content, content_type=passes.PKPASS_CONTENT_TYPE)
    response["Last-Modified"] = last_modified_header
    return response


@csrf_exempt
@require_POST
def device_log(request: HttpRequest) -> HttpResponse:
    """Wallet reports problems with the web service here ({"logs": ["message", ...]}); they are only logged.

    Anyone can call it, so it is throttled per client address (PASSKIT_LOG_THROTTLE_RATE, in the shared cache) and
    what is written is bounded: the body (MAX_BODY_BYTES), the lines logged
    (MAX_LOG_LINES, the rest counted) and their length (MAX_LOG_LINE_CHARS), control characters escaped so a line
    cannot pass for several.
    """
    throttle = DeviceLogRateThrottle()
    if not throttle.allow_request(request, None):
        response = HttpResponse(status=429)
        response["Retry-After"] = str(max(1, int(throttle.wait() or 60)))
        return response
    parsed, body = _json_body(request)
    lines = body.get("logs") if parsed and isinstance(body, dict) else None
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        return HttpResponse(status=400)
    for line in lines[:MAX_LOG_LINES]:
        logger.warning("passkit device log", extra={"device_log": escape_controls(line)[:MAX_LOG_LINE_CHARS]})
    if len(lines) > MAX_LOG_LINES:
        logger.warning("passkit device log lines dropped", extra={"dropped_lines": len(lines) - MAX_LOG_LINES})
    return HttpResponse(status=200)
