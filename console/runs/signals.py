"""What the runs app tells apps built on it, without importing them."""

from django.dispatch import Signal

#: An unknown retry was linked to its new run (by a person, or a check when
#: Skyvern named it), sent inside the transaction that records it, with
#: `retry`, `new_run`, `note` (the retry's check note) and `when`. Whatever
#: follows a retry (a bulk retry item of it) updates itself there.
retry_linked = Signal()
