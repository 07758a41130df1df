"""The second step of signing in, enforced on every request.

Someone signed in with a password whose account has a confirmed TOTP device
must enter a code (the code page) before any other page works. Where
TWO_FACTOR_REQUIRED_FOR_ADMINS is on, a superuser or team admin without a
device is kept on the enrolment page until they have set one up. Someone
signed in through the identity provider has had the provider's sign-in
instead (services.done_by_provider, OIDC_CONSOLE_TWO_FACTOR). Signing
out always works; static files are served before routing (WhiteNoise).
"""

from urllib.parse import urlencode

from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from . import services

# Views that work before the second step (by resolver view name).
ALWAYS_ALLOWED = {"logout", "theme_set"}
CODE_STEP = {"twofactor:verify"}
ENROLMENT = {"twofactor:manage", "twofactor:setup", "twofactor:confirm"}


class TwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        match = request.resolver_match
        name = match.view_name if match else ""
        if name in ALWAYS_ALLOWED or user.is_verified() or services.done_by_provider(request):
            return None
        if services.has_confirmed_device(user):
            if name in CODE_STEP:
                return None
            return self.send_to(request, reverse("twofactor:verify"), keep_next=True)
        if services.is_required_for(user):
            if name in ENROLMENT:
                return None
            return self.send_to(request, reverse("twofactor:manage"), keep_next=False)
        return None

    @staticmethod
    def send_to(request, url, *, keep_next):
        if request.headers.get("HX-Request"):
            # A fragment request: send the whole page there, not into the fragment's target.
            return HttpResponseClientRedirect(url)
        if keep_next and request.method == "GET":
            url = f"{url}?{urlencode({'next': request.get_full_path()})}"
        return redirect(url)
