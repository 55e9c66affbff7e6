"""Every retry policy and timeout of the workflows, named by the kind of step it is for.

One home, so a step's budget is read in one place and two kinds of step that must behave
alike share one policy instead of two copies. ``workflows/step_kinds.py`` bundles them into
the options of each kind of step.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from contracts.drill import CLEANUP_ATTEMPTS

# Metadata steps (begin, record the outcome) only read and write the metadata database: retried
# without an attempt limit, bounded in time by METADATA_BUDGET, so a database outage of minutes
# delays the record instead of losing it. Past the budget the run still ends, and the run
# reconciler settles its row from Temporal once the database is back.
METADATA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15)
)
METADATA_STEP = timedelta(seconds=30)
METADATA_BUDGET = timedelta(minutes=30)
# The first step also waits for the API's row to become visible; if it never does, the request
# that started the run failed, and the run ends instead of waiting forever.
BEGIN_BUDGET = timedelta(minutes=5)

# Control steps of the storage and retention workflows (database rows, listings): retried
# until their timeout, a database outage of seconds is ridden out.
CONTROL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
CONTROL_STEP = timedelta(seconds=30)
LISTING_STEP = timedelta(minutes=1)

# Data steps: five attempts over about half a minute ride out a storage or tool hiccup; past
# that the run fails with the reason instead of hiding the problem. (A metadata database
# outage is waited out inside the step: activities/support.py::read_metadata.)
DATA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
)
# A step that moves a whole backup's data (dump, upload, restore, prune): bounded by its
# heartbeat, not by a guess of how long the data takes.
TRANSFER_STEP = timedelta(hours=12)
# Steps that prepare or tidy around the data (quota check, manifest, stop and start of the
# application, cleanup, verifying a backup's snapshots before a drill).
PREPARE_STEP = timedelta(minutes=10)
SNAPSHOT_STEP = timedelta(minutes=30)
DRILL_CHECKS_STEP = timedelta(minutes=30)
VERIFY_RESULT_STEP = timedelta(hours=1)
# Removing every backup of a storage on a forced delete.
PURGE_STEP = timedelta(hours=2)
# A long step reports progress this often; silence past it means the worker died.
HEARTBEAT = timedelta(seconds=30)
# The retention sweep's prune heartbeats while restic repacks: a little more slack.
PRUNE_HEARTBEAT = timedelta(minutes=2)

# A backup's cleanup after a failure is best effort: a few tries, then a note on the row.
CLEANUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
# A drill's scratch copy is removed in every outcome: retried for about five minutes; the
# activity knows the attempt count (CLEANUP_ATTEMPTS) and notes a failure on the last one.
DRILL_CLEANUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=CLEANUP_ATTEMPTS,
)
# Starting the application again after a restore is tried for about a minute; then the restore
# says loudly that the application is down instead of hanging in "resume".
RESUME_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=15),
    maximum_attempts=6,
)

# Storage calls go to the PVE API, which answers in seconds; eight attempts over about four
# minutes ride out a node restart without retrying a refused configuration forever.
STORAGE_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
STORAGE_CALL_STEP = timedelta(seconds=60)

# A step of a periodic job (usage reading, schedule repair, run settling): three tries, then
# the job's next run tries again.
PERIODIC_RETRY = RetryPolicy(maximum_attempts=3)
USAGE_READING_STEP = timedelta(seconds=60)
RECONCILE_STEP = timedelta(minutes=5)
SETTLE_RUNS_STEP = timedelta(minutes=10)

# An offsite copy rides out a target that is away for hours: backoff from 10 s to half an hour,
# no attempt limit, bounded by the budget; a kill of the worker is noticed by the heartbeat.
OFFSITE_COPY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
)
OFFSITE_COPY_BUDGET = timedelta(hours=24)

# The failure alert: a webhook that is down is retried for a while, never the run's outcome.
ALERT_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=20)
ALERT_STEP = timedelta(seconds=30)
