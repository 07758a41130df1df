"""Start the whole console locally: simulator, worker and web server together.

Ctrl-C stops every process this command started.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import BaseCommand, CommandError, call_command

from console.demo.seed import DEMO_PASSWORD, seed_people_and_teams, seed_simulator_and_runs


def wait_for_port(host: str, port: int, *, seconds: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"{process.args[2]} exited with code {process.returncode}.")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"Nothing answered on {host}:{port} after {seconds:.0f} s.")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _stop_like_ctrl_c(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the demo: Skyvern simulator, task worker and web server, with seeded teams."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulator-port", type=int, default=8765)

    def handle(self, *args, host, port, simulator_port, **options):
        for what, number in (("web server", port), ("simulator", simulator_port)):
            if not port_is_free(host, number):
                raise CommandError(
                    f"Port {number} ({what}) is taken — is the demo already running? "
                    f"Choose another with --{'port' if what == 'web server' else 'simulator-port'}."
                )
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        # `kill`/`timeout` stop the demo like Ctrl-C does: children included.
        signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
        children: list[subprocess.Popen] = []
        # The teams' connections point at the simulator over plain http on
        # loopback: allowed for the processes started here, and for this one,
        # which syncs the seeded runs through it before the worker starts.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SKYVERN_ALLOW_LOOPBACK": "1"}
        settings.SKYVERN_ALLOW_LOOPBACK = True
        simulator_url = f"http://{host}:{simulator_port}"

        def start(*command, own_session=False):
            child = subprocess.Popen(  # noqa: S603 - our own commands
                [sys.executable, *command], env=env, start_new_session=own_session
            )
            children.append(child)
            return child

        try:
            # In its own session, so that Ctrl-C in the terminal reaches it only
            # through the demo, after everything that calls it has stopped.
            simulator = start(
                "-m",
                "console.simulator",
                "--host",
                host,
                "--port",
                str(simulator_port),
                "--state-file",
                str(settings.VAR_DIR / "simulator.json"),
                own_session=True,
            )
            wait_for_port(host, simulator_port, seconds=15, process=simulator)
            logins = seed_people_and_teams(simulator_url=simulator_url)
            seed_simulator_and_runs(
                simulator_url=simulator_url, console_url=f"http://{host}:{port}"
            )
            # The worker starts the periodic sync itself, as in production.
            start("manage.py", "db_worker")
            web = start("manage.py", "runserver", f"{host}:{port}", "--noreload", "--skip-checks")
            wait_for_port(host, port, seconds=30, process=web)
            self.print_welcome(f"http://{host}:{port}/", simulator_url, logins)
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            stopped = next(child for child in children if child.poll() is not None)
            raise CommandError(f"{' '.join(map(str, stopped.args[1:3]))} stopped unexpectedly.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo…")
        finally:
            # Last started, first stopped: the web server and the worker (which
            # finishes the sync it is in) go before the simulator they call.
            # SIGTERM, not SIGINT: a demo started in the background (`make demo
            # &`) passes an ignored SIGINT on to its children. Each stops cleanly
            # on SIGTERM (the simulator saves its state).
            for child in reversed(children):
                if child.poll() is None:
                    child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()

    def print_welcome(self, url, simulator_url, logins):
        width = max(len(name) for name, _ in logins)
        lines = [
            "",
            "Skyvern support console demo is running.",
            f"  Console:   {url}",
            f"  Simulator: {simulator_url}  (the teams' Skyvern)",
            f"  Logins (password for all: {DEMO_PASSWORD}):",
            *(f"    {name.ljust(width)}  {what}" for name, what in logins),
            "Press Ctrl-C to stop everything.",
            "",
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
