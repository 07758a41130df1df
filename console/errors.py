"""The CSRF failure page in the console's own look.

Django's built-in one has an inline <style> that the Content-Security-Policy
refuses. The 400/403/404/500 pages need no view of ours: Django's default
handlers render templates/400.html … 500.html, which carry no inline code.
"""

from django.shortcuts import render

CSRF_MESSAGE = "Your session's security token was missing or stale — reload the page and try again."


def csrf_failure(request, reason="", template_name="csrf_failure.html"):
    """403 for a POST without a valid CSRF token (CSRF_FAILURE_VIEW).

    Django has already logged the technical reason (django.security.csrf);
    the person gets one plain sentence.
    """
    return render(request, template_name, {"message": CSRF_MESSAGE}, status=403)
