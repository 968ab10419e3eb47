"""Mounted at /api/auto-engagement/."""

from django.urls import path

from autoengagement import api

app_name = "autoengagement"

urlpatterns = [
    path(
        "config",
        api.ConfigViewSet.as_view({"get": "retrieve", "post": "upsert", "delete": "destroy"}),
        name="config",
    ),
    path("history", api.HistoryViewSet.as_view({"get": "list"}), name="history"),
    path("history.csv", api.HistoryCsvView.as_view(), name="history-csv"),
    path("preview", api.PreviewViewSet.as_view({"post": "create"}), name="preview"),
    path("stats", api.StatsViewSet.as_view({"get": "retrieve"}), name="stats"),
]
