"""Booking a task: on commit only, once while the same one waits, and through
a slot whose task isn't bound yet only with a clear error."""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.tasks import task
from django.utils import timezone

from console.background.queue import (
    TaskSlot,
    enqueue_on_commit,
    enqueue_once,
    task_results,
    waiting_args,
)


@task
def tidy(item_id: int) -> int:
    return item_id


pytestmark = pytest.mark.django_db


def test_enqueue_once_books_one_task_per_arguments():
    assert enqueue_once(tidy, 1)
    assert not enqueue_once(tidy, 1)  # one is already waiting
    assert enqueue_once(tidy, 2)

    assert sorted(waiting_args(tidy)) == [[1], [2]]


def test_enqueue_once_books_an_earlier_start_but_not_a_later_one():
    later = timezone.now() + timedelta(minutes=5)
    assert enqueue_once(tidy, 1, run_after=later)

    assert not enqueue_once(tidy, 1, run_after=later + timedelta(minutes=1))
    assert enqueue_once(tidy, 1)  # sooner than the one waiting
    assert task_results(tidy).count() == 2


def test_enqueue_on_commit_books_nothing_for_work_rolled_back(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                enqueue_on_commit(tidy, 1)
                raise RuntimeError("the work failed")
        except RuntimeError:
            pass
        enqueue_on_commit(tidy, 2, once=True)
        enqueue_on_commit(tidy, 2, once=True)

    assert waiting_args(tidy) == [[2]]


def test_a_slot_books_its_bound_task_and_says_when_none_is_bound():
    slot = TaskSlot("tidying")
    with pytest.raises(ImproperlyConfigured, match="No task is bound to tidying"):
        enqueue_once(slot, 1)

    slot.bind(tidy)

    assert enqueue_once(slot, 1)
    assert waiting_args(tidy) == [[1]]
