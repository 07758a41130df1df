from django.urls import path

from . import views

app_name = "incidents"
urlpatterns = [
    path("failures/", views.failure_inbox, name="failure_inbox"),
    path("failures/retry/", views.group_retry_preview, name="group_retry_preview"),
    path("failures/retry/new/", views.group_retry_create, name="group_retry_create"),
    path("jobs/", views.job_list, name="job_list"),
    path("runs/find/", views.run_find, name="run_find"),
]
