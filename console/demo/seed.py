"""The demo's teams, people and runs, created only where absent."""

import secrets

import requests
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from console.sync.services import connection_sync, sync_state_for
from console.teams.models import Connection, Membership, Role, Team

DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed for the local demo only
DEMO_TEAMS = [("Acme Logistics", "acme"), ("Globex Billing", "globex")]
RUNS_PER_TEAM = 200


def seed_people_and_teams(*, simulator_url: str) -> list[tuple[str, str]]:
    """Teams, one user per role in each, a superuser, and each team's
    connection to the simulator. Returns (username, what they are) pairs."""
    User = get_user_model()
    logins = []
    with transaction.atomic():
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)
        logins.append(("admin", "superuser, sees every team"))
        for name, slug in DEMO_TEAMS:
            team, _ = Team.objects.get_or_create(slug=slug, defaults={"name": name})
            for role in Role:
                username = f"{slug}-{role.value}"
                user = User.objects.filter(username=username).first()
                if user is None:
                    user = User.objects.create_user(
                        username,
                        f"{username}@example.com",
                        DEMO_PASSWORD,
                        first_name=role.label,
                        last_name=f"at {name.split()[0]}",
                    )
                Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
                logins.append((username, f"{role.label.lower()} of {name}"))
            connection = team.connections.first()
            if connection is None:
                connection = Connection(
                    team=team, label="Skyvern (simulator)", base_url=simulator_url
                )
                connection.set_api_key(f"sk-demo-{slug}-{secrets.token_hex(12)}")
                connection.save()
            elif connection.base_url != simulator_url:
                connection.base_url = simulator_url
                connection.save(update_fields=["base_url", "updated_at"])
    return logins


def seed_simulator_and_runs(*, simulator_url: str, console_url: str) -> None:
    """Give each team's key an organisation in the simulator with its
    historical runs, then cache those runs in the console.

    The organisation's webhook URL is the connection's webhook on this
    console, so a run without a webhook of its own (a retry of one, say)
    shows up finished the moment the simulator finishes it."""
    for _, slug in DEMO_TEAMS:
        team = Team.objects.get(slug=slug)
        for connection in team.connections.filter(base_url=simulator_url):
            webhook = reverse("skyvern_webhook", args=[sync_state_for(connection).webhook_token])
            response = requests.post(
                f"{simulator_url}/_sim/orgs",
                json={
                    "api_key": connection.api_key(),
                    "name": team.name,
                    "seed": slug,
                    "seed_runs": RUNS_PER_TEAM,
                    "webhook_url": f"{console_url.rstrip('/')}{webhook}",
                },
                timeout=10,
            )
            response.raise_for_status()
            connection_sync(connection=connection, full=True)
