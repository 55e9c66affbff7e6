"""Retry policies, timeouts and failure wording shared by the workflows."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# The first step waits for the API's row to become visible; if it never does, the request
# that started the run failed, and the run ends instead of waiting forever.
BEGIN = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10),
    maximum_attempts=12,
)  # fmt: skip
# Data steps: five attempts over about half a minute ride out a database restart or a
# storage hiccup; past that the run fails with the reason instead of hiding the outage.
DATA = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
)
NOTIFY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=20)
HEARTBEAT = timedelta(seconds=30)
LONG = timedelta(hours=12)


def reason(error: BaseException) -> str:
    """The message a person can act on, from an activity failure or any error."""
    cause = error.cause if isinstance(error, ActivityError) else error
    return cause.message if isinstance(cause, ApplicationError) else str(cause or error)
