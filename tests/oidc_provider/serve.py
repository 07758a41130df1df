"""The test identity provider's process: `python -m tests.oidc_provider.serve`.

Reads its world from the environment (OIDC_TEST_WORLD: the client and the
people, as JSON), sets up its own SQLite database, and serves on
127.0.0.1:OIDC_TEST_PORT until it is stopped."""

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.oidc_provider.settings")

import django  # noqa: E402


def make_world(world: dict) -> None:
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    for person in world["people"]:
        user = User.objects.create_user(
            person["username"], person["email"], person["password"]
        )
        for name in person.get("groups", []):
            user.groups.add(Group.objects.get_or_create(name=name)[0])
    client = world["client"]
    Application.objects.create(
        name="Skyvern support console",
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(client["redirect_uris"]),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0, interactive=False)
    make_world(json.loads(os.environ["OIDC_TEST_WORLD"]))
    run("127.0.0.1", int(os.environ["OIDC_TEST_PORT"]), get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
