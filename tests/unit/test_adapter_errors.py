"""Every adapter failure is an AdapterError: one retry flag, one Temporal form, and it pickles.

Thread pools and Temporal's activity machinery pickle exceptions; a subclass's own
attributes (restic's exit code, PVE's status and field errors) must survive the trip.
"""

from __future__ import annotations

import pickle

import pytest

from activities.errors import to_application_error
from adapters.errors import AdapterError
from adapters.pg_dump import DumpError
from adapters.proxmox import ProxmoxError
from adapters.restic import ResticError
from adapters.storage_backend import BackendError

ERRORS: list[AdapterError] = [
    ResticError("restic backup failed (exit 3)", retryable=False, exit_code=3),
    DumpError("pg_dump failed (exit 1): connection refused", retryable=True),
    BackendError("the folder of storage s1 does not exist", retryable=False),
    ProxmoxError(400, "Parameter verification failed.", {"storage": "bad"}),
    ProxmoxError(None, "cannot reach PVE"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_pickling_keeps_the_class_and_every_attribute(error: AdapterError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_temporal_form_names_the_class_and_keeps_the_retry_decision(error: AdapterError) -> None:
    failure = to_application_error(error, "storing the backup")
    assert failure.type == type(error).__name__
    assert failure.non_retryable is not error.retryable
    assert failure.message == f"storing the backup: {error.message}"


def test_pve_retries_only_what_may_pass() -> None:
    assert ProxmoxError(None, "timed out").retryable
    assert ProxmoxError(503, "Service Unavailable").retryable
    assert not ProxmoxError(403, "Permission check failed").retryable
    assert not ProxmoxError(500, "storage 'x' does not exist").retryable
