from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console.sync.webhooks import skyvern_webhook
from console.teams import views as team_views

urlpatterns = [
    path("", team_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("t/<slug:team_slug>/", include("console.runs.urls")),
    path("t/<slug:team_slug>/connections/", include("console.teams.urls")),
    path("t/<slug:team_slug>/sync/", include("console.sync.urls")),
    path("t/<slug:team_slug>/bulk/", include("console.bulk.urls")),
    path("webhooks/skyvern/<str:token>/", skyvern_webhook, name="skyvern_webhook"),
    path("admin/", admin.site.urls),
]
