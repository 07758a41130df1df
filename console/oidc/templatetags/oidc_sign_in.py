"""`{% oidc_sign_in_button %}` on the sign-in page: only where the provider is configured."""

from django import template

from console.oidc.config import oidc_enabled, provider_name

register = template.Library()


@register.inclusion_tag("oidc/includes/_sign_in_button.html", takes_context=True)
def oidc_sign_in_button(context):
    return {
        "enabled": oidc_enabled(),
        "provider_name": provider_name(),
        "next": context.get("next", ""),
    }
