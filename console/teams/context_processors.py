from .access import my_teams


def teams(request):
    """The team switcher, shown on every page for a signed-in person."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A callable, so that fragments, which have no switcher, don't read it.
    return {"my_teams": lambda: my_teams(user)}
