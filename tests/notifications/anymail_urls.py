"""The project's URLs with anymail's webhooks mounted, as engagement_site.urls mounts them when EMAIL_BACKEND is an
anymail backend (settings are read once per process, so tests that need the webhooks use this URLconf)."""

from django.urls import include, path

from engagement_site.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("anymail/", include("anymail.urls")), *project_urlpatterns]
