"""The claims the test provider vouches for: email (verified), name, and the
person's groups (Django groups), as a company's provider would send them."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupsValidator(OAuth2Validator):
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "email_verified": "email",
        "groups": "profile",
    }

    def get_additional_claims(self, request):
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "name": user.get_full_name() or user.get_username(),
            "preferred_username": user.get_username(),
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }
