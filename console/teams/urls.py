from django.urls import path

from console.audit import urls as audit_urls

from . import views

app_name = "teams"
urlpatterns = [
    path("", views.connection_list, name="connection_list"),
    path("new/", views.connection_create, name="connection_create"),
    path("<int:pk>/", views.connection_edit, name="connection_edit"),
    path("<int:pk>/key/", views.connection_replace_key, name="connection_replace_key"),
    path("<int:pk>/delete/", views.connection_delete, name="connection_delete"),
    path("<int:pk>/test/", views.connection_test, name="connection_test"),
]

# Included at /t/<team>/members/ in the "members" namespace (console/urls.py).
member_patterns = [
    path("", views.member_list, name="member_list"),
    path("add/", views.member_add, name="member_add"),
    path("invite/", views.member_invite, name="member_invite"),
    path("<int:pk>/role/", views.member_role_change, name="member_role_change"),
    path("<int:pk>/remove/", views.member_remove, name="member_remove"),
]

# Included at the root in the "audit" namespace (console/urls.py): the audit
# app's pages of the whole log, and a team's log for its admins, served here
# because who may see a team is the teams app's rule.
audit_patterns = [
    *audit_urls.urlpatterns,
    path("t/<slug:team_slug>/audit/", views.audit_team_log, name="audit_team_log"),
    path("t/<slug:team_slug>/audit/export/", views.audit_team_export, name="audit_team_export"),
]
