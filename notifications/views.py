"""The unsubscribe page behind the links in our emails, and Twilio's delivery receipts (StatusCallback)."""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications.channels import Channel
from notifications.receipts import Receipt, twilio_receipt, twilio_signature_valid
from notifications.services import customer_opt_out
from notifications.signals import delivery_reported
from notifications.unsubscribe import InvalidUnsubscribeToken, read_unsubscribe_token
from wallet.models import Customer

logger = logging.getLogger(__name__)


@csrf_exempt  # The signed token authenticates the request; mail providers send RFC 8058 one-click POSTs blind.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks for confirmation (link scanners must not unsubscribe anyone); POST opts the customer out."""
    try:
        unsubscribe_request = read_unsubscribe_token(token=token)
    except InvalidUnsubscribeToken:
        return render(request, "notifications/unsubscribe/invalid.html", status=400)
    business = (
        Customer.objects.filter(customer_id=unsubscribe_request.customer_id)
        .values_list("business__name", flat=True)
        .first()
    )
    channel = Channel(unsubscribe_request.channel)
    context = {
        "business_name": business or "",
        "channel_label": channel.label if channel == Channel.SMS else channel.label.lower(),
    }
    if request.method == "POST":
        customer_opt_out(customer_id=unsubscribe_request.customer_id, channel=unsubscribe_request.channel)
        return render(request, "notifications/unsubscribe/done.html", context)
    return render(request, "notifications/unsubscribe/confirm.html", context)


@csrf_exempt  # Twilio's signature authenticates the request; there is no session and no CSRF token.
@never_cache
@require_http_methods(["POST"])
def twilio_status(request: HttpRequest) -> HttpResponse:
    """Twilio's StatusCallback: 403 unless X-Twilio-Signature signs the request, else 204 whatever the message
    (an unknown or foreign notification too: the answer says nothing about which notifications exist)."""
    params = [(name, value) for name, values in request.POST.lists() for value in values]
    if not twilio_signature_valid(
        url=public_url(request),
        params=params,
        auth_token=settings.TWILIO_AUTH_TOKEN,
        signature=request.headers.get("X-Twilio-Signature", ""),
    ):
        logger.warning("twilio status callback refused: bad signature", extra={"path": request.path})
        return HttpResponse(status=403)
    receipt = twilio_receipt(request.POST.dict(), notification_id=request.GET.get("notification_id", ""))
    if receipt is not None and receipt.provider_message_id:
        delivery_reported.send(sender=Receipt, receipt=receipt)
    return HttpResponse(status=204)


def public_url(request: HttpRequest) -> str:
    """The URL the provider called, as it signed it: under PUBLIC_BASE_URL when set (behind a proxy the request's
    own host and scheme are the proxy's), else as this server received it."""
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL.rstrip("/") + request.get_full_path()
    return request.build_absolute_uri()
