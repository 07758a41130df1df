from django.urls import path

from . import views

app_name = "sync"
# Included at /t/<team>/ (console/urls.py).
urlpatterns = [
    path("sync/", views.sync_status, name="sync_status"),
    path("sync/now/", views.sync_now, name="sync_now"),
    # On the team's Connections page, drawn there by {% connection_webhooks %}.
    path(
        "connections/<int:pk>/webhook-url/",
        views.connection_new_webhook_url,
        name="connection_new_webhook_url",
    ),
]
