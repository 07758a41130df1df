"""One incident view for staff in many teams: the failure inbox, the bulk
retries and a run found by id, across every team the person may see
(superusers: every team), and one bulk retry of a cause across teams.

Every query starts from `.restrict(user, action)`: nothing here reaches a
team the person is not in. A cross-team bulk retry is one ordinary job per
team (each team's own connections, throttle and key), created by the same
service as a team's bulk retry, which checks the role again per team.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Count

from console.bulk.models import BulkRetryJob
from console.bulk.selection import Scope, Selection
from console.bulk.services import (
    BulkPreview,
    BulkRetryRefused,
    bulk_retry_create,
    bulk_retry_preview,
)
from console.runs.inbox import GROUPS_SHOWN, FailureGroup, team_failure_groups
from console.runs.models import Run
from console.teams.models import RETRY, VIEW, Team

GROUP_FILTER = "group"  # the runs page's filter name for a failure group


@dataclass
class CauseAcrossTeams:
    """One cause of failure (a failure group key) and the teams it hit: one
    row of the inbox across teams, with each team's own numbers in it."""

    key: str
    total: FailureGroup  # the teams' numbers added up (its team_id means nothing)
    parts: list[tuple[Team, FailureGroup]] = field(default_factory=list)

    @property
    def retryable(self) -> bool:
        """Whether the person may retry it in at least one of its teams."""
        return any(team.may[RETRY] for team, _group in self.parts)


@dataclass
class InboxAcrossTeams:
    causes: list[CauseAcrossTeams]
    total_runs: int
    total_groups: int  # (team, group) pairs, as the team inbox counts them
    hours_from: datetime
    teams: int  # how many teams the shown causes hit
    truncated: bool = False  # more causes than shown


def _teams_of(user, team_ids) -> dict[int, Team]:
    """The person's teams among `team_ids`, each with their role (`may`)."""
    return {team.pk: team for team in Team.objects.roles_of(user).filter(pk__in=team_ids)}


def inbox_across_teams(
    *, user, now: datetime | None = None, limit: int = GROUPS_SHOWN
) -> InboxAcrossTeams:
    """The person's failed runs in all their teams, by cause, most recently
    seen first. A cause hitting several teams is one row naming each team
    with its own count, retries and success rate (each team's retries are
    its own); the row's totals add them up. At most `limit` team groups
    pick the causes shown, each then shown in all its teams."""
    # Read from the counts the database keeps per team and group (inbox.py),
    # of the teams the person may view.
    team_ids = list(Team.objects.restrict(user, VIEW).values_list("pk", flat=True))
    inbox = team_failure_groups(team_ids, now=now, limit=limit)
    groups = inbox.groups
    if inbox.total_groups > len(groups):
        # The shown causes' other teams may be past the limit: take those
        # causes in every team, so that no row leaves a team out.
        keys = {group.key for group in groups}
        every = team_failure_groups(team_ids, now=now, limit=inbox.total_groups).groups
        groups = [group for group in every if group.key in keys]
    teams = _teams_of(user, {group.team_id for group in groups})
    causes: dict[str, CauseAcrossTeams] = {}
    for group in groups:
        team = teams.get(group.team_id)
        if team is None:  # left the team meanwhile
            continue
        cause = causes.get(group.key)
        if cause is None:
            total = FailureGroup(
                team_id=0,
                key=group.key,
                count=0,
                first_seen=group.first_seen,
                last_seen=group.last_seen,
                category=group.category,
                reason=group.reason,
                workflow_permanent_id=group.workflow_permanent_id,
                workflow_title=group.workflow_title,
            )
            cause = causes[group.key] = CauseAcrossTeams(key=group.key, total=total)
        _add(cause.total, group)
        cause.parts.append((team, group))
    for cause in causes.values():
        cause.parts.sort(key=lambda part: (-part[1].count, part[0].name))
    return InboxAcrossTeams(
        causes=list(causes.values()),
        total_runs=inbox.total_runs,
        total_groups=inbox.total_groups,
        hours_from=inbox.hours_from,
        teams=len(teams),
        truncated=inbox.total_groups > len(inbox.groups),
    )


def _add(total: FailureGroup, group: FailureGroup) -> None:
    total.count += group.count
    total.first_seen = min(total.first_seen, group.first_seen)
    total.last_seen = max(total.last_seen, group.last_seen)
    total.per_hour = [a + b for a, b in zip(total.per_hour, group.per_hour, strict=True)]
    total.retried += group.retried
    total.retries_completed += group.retries_completed
    total.retries_finished += group.retries_finished


def jobs_across_teams(*, user):
    """The bulk retry jobs of all the person's teams, newest first, with their
    team and what became of their retries."""
    return (
        BulkRetryJob.objects.restrict(user, VIEW)
        .select_related("team", "created_by")
        .with_outcome_counts()
        .order_by("-created_at", "-id")
    )


def runs_with_id(*, user, run_id: str, limit: int = 20) -> list[Run]:
    """The runs with this Skyvern run id in the person's teams (one, unless
    two teams share a Skyvern organisation), each with its team."""
    run_id = (run_id or "").strip()
    if not run_id:
        return []
    return list(
        Run.objects.restrict(user, VIEW)
        .filter(run_id=run_id)
        .select_related("team")
        .only("pk", "run_id", "status", "workflow_title", "team__slug", "team__name")
        .order_by("team__name")[:limit]
    )


# --- one cause retried across teams -----------------------------------------------------


@dataclass
class TeamRetry:
    """One team's part of a cross-team bulk retry: its selection (every run of
    the group, bounded by the team's newest run when previewed) and preview."""

    team: Team
    selection: Selection
    preview: BulkPreview


@dataclass
class TeamLeftOut:
    """A team whose runs of the group the person may see but not retry."""

    team: Team
    runs: int


@dataclass
class GroupRetryPlan:
    group: str
    parts: list[TeamRetry]
    left_out: list[TeamLeftOut]
    refused: list[str] = field(default_factory=list)  # posted teams not theirs to retry

    @property
    def to_send(self) -> int:
        return sum(part.preview.to_send for part in self.parts)

    @property
    def total(self) -> int:
        return sum(part.preview.total for part in self.parts)

    @property
    def sending_teams(self) -> list[TeamRetry]:
        return [part for part in self.parts if part.preview.to_send]


def _group_selection(group: str, upto: int | None) -> Selection:
    return Selection(Scope.ALL_MATCHING, filter=((GROUP_FILTER, group),), upto=upto)


def _retry_runs(user, team: Team):
    return Run.objects.restrict(user, RETRY).filter(team=team)


def group_retry_plan(
    *,
    user,
    group: str,
    include_already_retried: bool = False,
    teams: list[str] | None = None,
    bounds: dict[str, int] | None = None,
) -> GroupRetryPlan:
    """What retrying failure group `group` in the person's teams would do,
    team by team; nothing is sent or recorded.

    Teams where the person may only view are left out (with their count).
    `teams` (slugs, from a confirmation form) narrows the plan to those
    teams: slugs that are not teams the person may retry in are `refused`,
    never planned. `bounds` keeps each team's "all matching" selection to
    the runs cached when it was previewed."""
    bounds = bounds or {}
    counts = dict(
        Run.objects.restrict(user, VIEW)
        .filter(failure_group=group)
        .order_by()
        .values_list("team_id")
        .annotate(n=Count("id"))
    )
    mine = _teams_of(user, counts)
    plan = GroupRetryPlan(group=group, parts=[], left_out=[])
    if teams is not None:
        retryable = set(
            Team.objects.restrict(user, RETRY).filter(slug__in=teams).values_list("slug", flat=True)
        )
        plan.refused = sorted(set(teams) - retryable)
    for team in sorted(mine.values(), key=lambda team: team.name):
        if not team.may[RETRY]:
            plan.left_out.append(TeamLeftOut(team=team, runs=counts[team.pk]))
            continue
        if teams is not None and team.slug not in teams:
            continue
        team_runs = _retry_runs(user, team)
        selection = _group_selection(group, bounds.get(team.slug)).within(team_runs)
        preview = bulk_retry_preview(
            team=team,
            runs=selection.runs(team_runs),
            include_already_retried=include_already_retried,
        )
        plan.parts.append(TeamRetry(team=team, selection=selection, preview=preview))
    return plan


def group_retry_create(
    *,
    user,
    plan: GroupRetryPlan,
    reason: str,
    include_already_retried: bool,
    max_steps_override: int | None,
    request=None,
) -> list[BulkRetryJob]:
    """Create one bulk retry job per team of `plan` that has runs to send,
    all or none: each an ordinary job of its team (its throttle, its key),
    created by `bulk_retry_create`, which checks the operator role in that
    team again. Nothing is sent here; each job's worker is booked on commit.
    Refused (BulkRetryRefused) when the plan names a team not the person's
    to retry in, or has nothing to send."""
    if plan.refused:
        raise BulkRetryRefused(
            "You can't retry runs in " + ", ".join(plan.refused) + ": nothing was created."
        )
    parts = plan.sending_teams
    if not parts:
        raise BulkRetryRefused("Nothing to send: every run of this group is skipped.")
    jobs = []
    with transaction.atomic():
        for part in parts:
            team_runs = _retry_runs(user, part.team)
            runs = part.selection.runs(team_runs)
            selection = part.selection.as_json(count=runs.count())
            selection["across_teams"] = [other.team.slug for other in parts]
            try:
                job = bulk_retry_create(
                    team=part.team,
                    user=user,
                    runs=runs,
                    reason=reason,
                    include_already_retried=include_already_retried,
                    max_steps_override=max_steps_override,
                    selection=selection,
                    request=request,
                )
            except BulkRetryRefused as refused:
                raise BulkRetryRefused(f"{part.team.name}: {refused}") from refused
            jobs.append(job)
    return jobs
