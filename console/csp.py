"""The Content-Security-Policy header: Django's own, plus the simulator's origins.

The policy itself is `SECURE_CSP` in settings. Screenshots and recordings of
the demo's Skyvern simulator are served over plain http from a loopback
address, so where SKYVERN_ALLOW_LOOPBACK is on (read per response, like every
other use of that setting) those origins are added to img-src and media-src.
Nothing else is ever added: no inline code and no eval, with or without it.
"""

from django.conf import settings
from django.middleware.csp import ContentSecurityPolicyMiddleware as DjangoCSPMiddleware

# CSP host sources can't name IPv6 literals, so [::1] is not among them.
LOOPBACK_HTTP_SOURCES = ("http://127.0.0.1:*", "http://localhost:*")
LOOPBACK_DIRECTIVES = ("img-src", "media-src")


def policy_with_loopback(policy: dict) -> dict:
    """`policy` with the loopback http origins allowed for images and media."""
    extended = dict(policy)
    for directive in LOOPBACK_DIRECTIVES:
        sources = list(extended.get(directive) or extended.get("default-src") or [])
        extended[directive] = sources + [s for s in LOOPBACK_HTTP_SOURCES if s not in sources]
    return extended


class ContentSecurityPolicyMiddleware(DjangoCSPMiddleware):
    def process_response(self, request, response):
        if (
            settings.SKYVERN_ALLOW_LOOPBACK
            and settings.SECURE_CSP
            and not hasattr(response, "_csp_config")
        ):
            response._csp_config = policy_with_loopback(settings.SECURE_CSP)
        return super().process_response(request, response)
