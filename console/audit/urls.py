from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export/", views.audit_export, name="audit_export"),
    path("t/<slug:team_slug>/audit/", views.audit_team_log, name="audit_team_log"),
    path("t/<slug:team_slug>/audit/export/", views.audit_team_export, name="audit_team_export"),
]
