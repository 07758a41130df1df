from django.urls import path

from . import views

app_name = "sync"
urlpatterns = [
    path("", views.sync_status, name="sync_status"),
    path("now/", views.sync_now, name="sync_now"),
]
