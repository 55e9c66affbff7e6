"""A Kubernetes API server fake that the official clients talk to unmodified."""

from tests.fakes.kube.resources import (
    CSI_DRIVER,
    SECOND_CSI_DRIVER,
    SECOND_STORAGE_CLASS,
    STORAGE_CLASS,
)
from tests.fakes.kube.server import FakeKube, Request

__all__ = [
    "CSI_DRIVER",
    "SECOND_CSI_DRIVER",
    "SECOND_STORAGE_CLASS",
    "STORAGE_CLASS",
    "FakeKube",
    "Request",
]
