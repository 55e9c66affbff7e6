"""Deterministic names and labels of what cairn creates in a cluster for a run.

A retried step must find the Job, claim or snapshot its first attempt made instead of making
a second one, so every name derives from the run id and the part alone. The labels let
``release`` find everything of a run, whatever step made it.
"""

from __future__ import annotations

import hashlib
from typing import Final

MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "cairn"}
RUN_LABEL: Final = "cairn.dev/run"
# On mover pods: says what they are (to the cluster's own network rules, say).
ROLE_LABEL: Final = "backup.cairn.io/role"
MOVER_LABELS: Final = {**MANAGED_BY, ROLE_LABEL: "mover"}


def run_name(kind: str, run_id: str, part: str = "") -> str:
    """``cairn-<kind>-<12 hex of the run>[-<8 hex of the part>]``: a valid DNS-1123 label.

    The part (a volume's logical name) is hashed: it may hold characters a name may not.
    """
    name = f"cairn-{kind}-{run_id.replace('-', '')[:12]}"
    if part:
        name += "-" + hashlib.sha256(part.encode()).hexdigest()[:8]
    return name


def run_labels(run_id: str) -> dict[str, str]:
    return {**MANAGED_BY, RUN_LABEL: run_id}


def run_selector(run_id: str) -> str:
    return f"{RUN_LABEL}={run_id}"
