from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from wallet.throttling import throttled_admin_login

urlpatterns = [
    path("admin/login/", throttled_admin_login),
    path("admin/", admin.site.urls),
    path("api/", include("wallet.urls")),
    path("api/auto-engagement/", include("autoengagement.urls")),
    path("api/", include("webhooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("unsubscribe/", include("notifications.urls")),
    path("", include("wallet.passkit_urls")),
]
