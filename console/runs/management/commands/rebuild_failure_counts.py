"""`manage.py rebuild_failure_counts [TEAM_SLUG ...]`: count the failure inbox
and the runs page's counts per status again."""

from django.core.management.base import BaseCommand, CommandError

from console.runs.failure_counts import rebuild_failure_counts
from console.teams.models import Team


class Command(BaseCommand):
    help = (
        "Count the failure inbox's groups and the runs page's counts per status again from "
        "the cached runs, for the teams named (all teams without a name)."
    )

    def add_arguments(self, parser):
        parser.add_argument("team_slugs", nargs="*", metavar="TEAM_SLUG")

    def handle(self, *args, team_slugs=(), **options):
        teams = Team.objects.order_by("slug")
        if team_slugs:
            teams = teams.filter(slug__in=team_slugs)
            missing = sorted(set(team_slugs) - set(teams.values_list("slug", flat=True)))
            if missing:
                raise CommandError(f"No team {', '.join(missing)}.")
        for team in teams:
            groups = rebuild_failure_counts(team.pk)
            self.stdout.write(f"{team.slug}: {groups} failure groups counted again")
