"""What GET /api/customers/{customer_id}/pass returns: the signed .pkpass, or a Google "save to wallet" link.

The authenticated view (business API) is wired on top of `customer_pass_response`; this module knows nothing of
HTTP authentication.
"""

from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from engagement_site.exceptions import NotConfigured, ObjectNotFound
from wallet import passes
from wallet.apple_web_service import apple_config
from wallet.google_wallet import load_google_config, save_url
from wallet.models import Customer, WalletPass


class CustomerHasNoPass(ObjectNotFound):
    """The customer has no wallet pass (of the requested platform): the API answers 404."""

    default_message = "This customer has no wallet pass."


@dataclass(frozen=True)
class CustomerPassResponse:
    """Either `content` (Apple, with its content type and Last-Modified) or `data` (Google, a JSON object)."""

    wallet_pass: WalletPass
    content_type: str
    content: bytes = b""
    data: dict | None = None


def customer_pass_response(*, customer: Customer, platform: str | None = None) -> CustomerPassResponse:
    """The customer's newest pass (of `platform` when given): Apple as .pkpass bytes, Google as {"save_url": ...}."""
    candidates = WalletPass.objects.select_related("customer__business").filter(customer=customer)
    if platform:
        candidates = candidates.filter(platform=platform)
    wallet_pass = candidates.order_by("-created_at", "-pk").first()
    if wallet_pass is None:
        raise CustomerHasNoPass()
    try:
        if wallet_pass.platform == WalletPass.Platform.APPLE:
            content = passes.build_pkpass(wallet_pass=wallet_pass, config=apple_config())
            return CustomerPassResponse(
                wallet_pass=wallet_pass, content_type=passes.PKPASS_CONTENT_TYPE, content=content
            )
        url = save_url(wallet_pass=wallet_pass, config=load_google_config())
    except ImproperlyConfigured as exc:
        raise NotConfigured(f"{wallet_pass.get_platform_display()} passes are not configured: {exc}") from exc
    return CustomerPassResponse(wallet_pass=wallet_pass, content_type="application/json", data={"save_url": url})
