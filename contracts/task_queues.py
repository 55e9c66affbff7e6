"""The Temporal task queues: where a workflow or activity runs is part of the contract.

Workflows run on the control queue with the database-only steps; steps that move backup data
run on the data queue, served by workers that can be scaled apart from the control ones.
"""

from __future__ import annotations

CONTROL_TASK_QUEUE = "cairn-control"
DATA_TASK_QUEUE = "cairn-data"
