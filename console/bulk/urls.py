from django.urls import path

from . import views

app_name = "bulk"
urlpatterns = [
    path("", views.bulk_job_list, name="bulk_job_list"),
    path("preview/", views.bulk_retry_preview, name="bulk_retry_preview"),
    path("new/", views.bulk_retry_create, name="bulk_retry_create"),
    path("<int:job_id>/", views.bulk_job_detail, name="bulk_job_detail"),
    path("<int:job_id>/progress/", views.bulk_job_progress, name="bulk_job_progress"),
    path("<int:job_id>/items.csv", views.bulk_job_export, name="bulk_job_export"),
    path("<int:job_id>/pause/", views.bulk_job_pause, name="bulk_job_pause"),
    path("<int:job_id>/resume/", views.bulk_job_resume, name="bulk_job_resume"),
    path("<int:job_id>/cancel/", views.bulk_job_cancel, name="bulk_job_cancel"),
    path("<int:job_id>/threshold/", views.bulk_job_threshold, name="bulk_job_threshold"),
    path("<int:job_id>/items/<int:item_id>/check/", views.bulk_item_check, name="bulk_item_check"),
    path(
        "<int:job_id>/items/<int:item_id>/retry-anyway/",
        views.bulk_item_retry_anyway,
        name="bulk_item_retry_anyway",
    ),
]
