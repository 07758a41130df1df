from django.urls import path

from . import views

app_name = "oidc"

urlpatterns = [
    path("sign-in/", views.SignInStart.as_view(), name="sign_in"),
    path("callback/", views.SignInCallback.as_view(), name="callback"),
]
