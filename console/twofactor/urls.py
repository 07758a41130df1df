from django.urls import path

from . import views

app_name = "twofactor"

urlpatterns = [
    path("login/code/", views.verify, name="verify"),
    path("account/two-factor/", views.manage, name="manage"),
    path("account/two-factor/setup/", views.setup, name="setup"),
    path("account/two-factor/confirm/", views.confirm, name="confirm"),
    path("account/two-factor/disable/", views.disable, name="disable"),
    path("account/time-zone/", views.time_zone_change, name="time_zone_change"),
]
