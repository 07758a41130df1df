import html
import re
import threading

from django.db import connection as db_connection

TAG = re.compile(r"<[^>]+>")


def page_text(response) -> str:
    """What a person reads on the page: tags dropped, entities decoded,
    white space folded."""
    text = TAG.sub(" ", response.content.decode())
    return " ".join(html.unescape(text).split())


def run_in_threads(*targets, timeout=60):
    """Call each of `targets` in its own thread, all released at the same
    moment, each with its own database connection; their results, in the
    order they finished. Fails if any of them raised."""
    barrier = threading.Barrier(len(targets))
    results, errors = [], []

    def wrapped(target):
        try:
            barrier.wait()
            results.append(target())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=wrapped, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not errors, errors
    return results
