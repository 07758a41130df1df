"""`python -m console.simulator`: run the Skyvern simulator until SIGINT/SIGTERM.

Prints exactly one line, "Skyvern simulator listening on http://HOST:PORT",
once it accepts connections, then serves until interrupted and exits 0.
"""

import argparse
import signal
import sys
import threading

from .server import SimulatorServer


def _org_spec(text: str) -> tuple[str, int, str | None]:
    key, _, rest = text.partition(":")
    count, _, seed = rest.partition(":")
    if not key:
        raise argparse.ArgumentTypeError("expected API_KEY[:SEED_RUNS[:SEED]]")
    try:
        runs = int(count) if count else 0
    except ValueError:
        raise argparse.ArgumentTypeError("SEED_RUNS must be a number") from None
    return key, runs, seed or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m console.simulator", description="A Skyvern API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--state-file", default=None, help="keep orgs and runs in this JSON file")
    parser.add_argument("--app-host", default=None, help="host of app_url (default: this server)")
    parser.add_argument(
        "--org",
        action="append",
        default=[],
        type=_org_spec,
        metavar="API_KEY[:SEED_RUNS[:SEED]]",
        help="create this organisation at start (idempotent with --state-file)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    server = SimulatorServer(
        host=args.host,
        port=args.port,
        state_file=args.state_file,
        app_host=args.app_host,
        verbose=args.verbose,
    )
    for key, runs, seed in args.org:
        server.state.add_org(key, seed=seed, seed_runs=runs)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    print(f"Skyvern simulator listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
