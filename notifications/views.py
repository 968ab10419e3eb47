"""The unsubscribe page behind the links in our emails."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications.channels import Channel
from notifications.services import customer_opt_out
from notifications.unsubscribe import InvalidUnsubscribeToken, read_unsubscribe_token
from wallet.models import Customer


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
