from django.urls import path

from . import views

# The "audit" namespace: these, and a team's log (/t/<team>/audit/), which the
# teams app serves and adds to this namespace (console/teams/urls.py).
urlpatterns = [
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export/", views.audit_export, name="audit_export"),
]
