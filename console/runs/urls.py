from django.urls import path, register_converter

from . import views
from .converters import RunIdConverter

register_converter(RunIdConverter, "run_id")

app_name = "runs"
urlpatterns = [
    path("runs/", views.run_list, name="run_list"),
    path("failures/", views.failure_inbox, name="failure_inbox"),
    path("runs/updates/", views.run_list_updates, name="run_updates"),
    path("runs/<run_id:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<run_id:run_id>/refresh/", views.run_detail_refresh, name="run_detail_refresh"),
    path("runs/<run_id:run_id>/card/", views.run_card, name="run_card"),
    path("runs/<run_id:run_id>/retry/", views.run_retry, name="run_retry"),
    path("runs/<run_id:run_id>/retry/confirm/", views.run_retry_confirm, name="run_retry_confirm"),
    path(
        "runs/<run_id:run_id>/webhook/replay/",
        views.run_webhook_replay,
        name="run_webhook_replay",
    ),
    path("runs/<run_id:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<run_id:run_id>/rerun/", views.run_rerun, name="run_rerun"),
    path(
        "runs/<run_id:run_id>/retries/<int:number>/check/",
        views.retry_check,
        name="retry_check",
    ),
    path("runs/<run_id:run_id>/retries/<int:number>/link/", views.retry_link, name="retry_link"),
]
