"""Apple's PassKit web service, served under the path of WALLET_WEB_SERVICE_URL (default /wallet/apple/)."""

from django.conf import settings
from django.urls import path

from wallet import apple_web_service
from wallet.passes import web_service_path_prefix

prefix = web_service_path_prefix(web_service_url=settings.WALLET_WEB_SERVICE_URL)

urlpatterns = [
    path(
        f"{prefix}v1/devices/<str:device_library_identifier>/registrations/<str:pass_type_identifier>/<str:serial_number>",
        apple_web_service.registration,
        name="passkit-registration",
    ),
    path(
        f"{prefix}v1/devices/<str:device_library_identifier>/registrations/<str:pass_type_identifier>",
        apple_web_service.updated_serials,
        name="passkit-updated-serials",
    ),
    path(
        f"{prefix}v1/passes/<str:pass_type_identifier>/<str:serial_number>",
        apple_web_service.latest_pass,
        name="passkit-latest-pass",
    ),
    path(f"{prefix}v1/log", apple_web_service.device_log, name="passkit-log"),
]
