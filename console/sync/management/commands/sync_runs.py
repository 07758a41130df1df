from django.core.management import BaseCommand, CommandError

from console.sync.services import connection_sync
from console.teams.models import Connection


class Command(BaseCommand):
    help = "Bring the cached run history in line with Skyvern (incremental unless --full)."

    def add_arguments(self, parser):
        parser.add_argument("--team", help="only this team's connections (its slug)")
        parser.add_argument(
            "--full", action="store_true", help="read every page, not only what is new"
        )

    def handle(self, *args, team=None, full=False, **options):
        connections = Connection.objects.select_related("team").order_by("team__slug", "label")
        if team:
            connections = connections.filter(team__slug=team)
            if not connections.exists():
                raise CommandError(f"No team {team!r}, or it has no Skyvern connection.")
        failed = 0
        for connection in connections:
            result = connection_sync(connection=connection, full=full)
            line = f"{connection.team.slug} / {connection.label}: {result.summary()}"
            if result.error:
                failed += 1
                self.stderr.write(self.style.ERROR(line))
            else:
                self.stdout.write(line)
        if failed:
            raise CommandError(f"{failed} connection(s) could not be synced.")
