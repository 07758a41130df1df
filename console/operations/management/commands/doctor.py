"""`manage.py doctor`: check this deployment and say what to fix."""

from django.core.management.base import BaseCommand, CommandError

from console.operations.doctor import OK, PROBLEM, WARNING, doctor_checks


class Command(BaseCommand):
    help = (
        "Check this deployment (secrets, DEBUG, hosts, database, migrations, static files, "
        "workers, syncs, keys, webhooks) and say what to fix; exits 1 on a problem."
    )

    def handle(self, *args, **options):
        findings = doctor_checks()
        styles = {OK: self.style.SUCCESS, WARNING: self.style.WARNING, PROBLEM: self.style.ERROR}
        for finding in findings:
            mark = {OK: "ok     ", WARNING: "warning", PROBLEM: "PROBLEM"}[finding.level]
            line = f"{mark}  {finding.check}: {finding.message}"
            self.stdout.write(styles[finding.level](line))
            if finding.fix:
                self.stdout.write(f"         fix: {finding.fix}")
        problems = sum(finding.level == PROBLEM for finding in findings)
        warnings = sum(finding.level == WARNING for finding in findings)
        summary = f"{problems} problem(s), {warnings} warning(s)"
        if problems:
            raise CommandError(summary, returncode=1)
        self.stdout.write(self.style.SUCCESS(summary))
