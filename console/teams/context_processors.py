from .models import Team


def teams(request):
    """The team switcher, shown on every page for a signed-in person."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"my_teams": Team.objects.for_user(user).only("name", "slug")}
