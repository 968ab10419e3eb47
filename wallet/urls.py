"""Mounted at /api/: the session endpoints, API keys and the customers (more views can join the router)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from wallet import api

app_name = "wallet"

router = SimpleRouter(trailing_slash=False)
router.register("customers", api.CustomerViewSet, basename="customer")
router.register("api-keys", api.ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/login", api.LoginView.as_view(), name="login"),
    path("auth/logout", api.LogoutView.as_view(), name="logout"),
    path("visits", api.VisitsView.as_view(), name="visits"),
    *router.urls,
]
