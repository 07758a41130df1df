from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import theme
from console.runs import layout as runs_layout
from console.sync.webhooks import skyvern_webhook
from console.teams import urls as team_urls
from console.teams import views as team_views

urlpatterns = [
    path("", team_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("theme/", theme.theme_set, name="theme_set"),
    path("runs-layout/", runs_layout.layout_set, name="runs_layout_set"),
    path("", include("console.twofactor.urls")),  # /login/code/, /account/two-factor/
    path("oidc/", include("console.oidc.urls")),  # sign-in with the identity provider
    path("", include("console.incidents.urls")),  # /failures/, /jobs/, /runs/find/: all my teams
    path("t/<slug:team_slug>/", include("console.runs.urls")),
    path("t/<slug:team_slug>/connections/", include("console.teams.urls")),
    # /t/<team>/sync/…, and /t/<team>/connections/<pk>/webhook-url/
    path("t/<slug:team_slug>/", include("console.sync.urls")),
    path("t/<slug:team_slug>/bulk/", include("console.bulk.urls")),
    path("t/<slug:team_slug>/members/", include((team_urls.member_patterns, "members"))),
    path("", include((team_urls.audit_patterns, "audit"))),  # /audit/, /t/<team>/audit/
    path("teams/new/", team_views.team_create, name="team_create"),
    path(
        "welcome/<uidb64>/<token>/",
        team_views.PasswordSetView.as_view(),
        name="password_set",
    ),
    path("webhooks/skyvern/<str:token>/", skyvern_webhook, name="skyvern_webhook"),
    path("admin/", admin.site.urls),
]
